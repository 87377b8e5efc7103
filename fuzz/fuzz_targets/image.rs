#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wgvit::fuzz::image(data));
