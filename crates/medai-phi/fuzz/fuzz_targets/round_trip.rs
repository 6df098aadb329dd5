//! De-identify then re-identify gives back exactly the input, whatever the input.
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::round_trip(data));
