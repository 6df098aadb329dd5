//! medai
fn main() {}
