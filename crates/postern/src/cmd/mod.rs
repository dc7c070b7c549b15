pub mod apply;
pub mod archive;
pub mod check;
pub mod serve;
pub mod test;
