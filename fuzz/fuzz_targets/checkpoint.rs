#![no_main]
//! `cargo fuzz run checkpoint`: see `ledger_fuzz::checkpoint`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::checkpoint(data);
});
