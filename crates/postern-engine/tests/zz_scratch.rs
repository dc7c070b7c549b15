#[test]
fn scratch() {
    let raw = "To: \"john doe\"@example.com\r\nTo: <\"john doe\"@example.com>\r\nTo: John <\"john.doe\"@example.com>\r\nTo: \"john.doe\"@example.com, x@y\r\nTo: \"a\\\"b\"@example.com\r\nTo: Undisclosed recipients:;\r\nTo: not an address\r\nSubject: =?UTF-8?B?SGVsbG8=?=\r\n\twrapped\r\n\r\nbody\r\n";
    let m = postern_engine::message_parser().parse(raw.as_bytes()).unwrap();
    for h in m.headers() {
        println!("{:?} => {:?}", h.name, h.value);
    }
}
