#![no_main]
//! `cargo fuzz run proof`: see `ledger_fuzz::proof`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::proof(data);
});
