//! Arbitrary text as a config file and as a rule test file: errors, never a
//! panic, and every error has a position and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match postern_config::parse_config("fuzz.yaml", &text, &|_| Err("no includes".into())) {
        Ok(config) => {
            let _ = config.summary();
            let _ = postern_engine::Engine::build(&config);
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty());
            for d in diagnostics.iter() {
                assert!(!d.message.is_empty());
            }
            let _ = diagnostics.to_string();
        }
    }
    let _ = postern_config::parse_document::<postern_model::RuleTestFile>(
        "fuzz.yaml",
        &text,
        "RuleTestFile",
    );
});
