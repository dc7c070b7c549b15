pub mod archive;
pub mod check;
pub mod serve;
pub mod test;
