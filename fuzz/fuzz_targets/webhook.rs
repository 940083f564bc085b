#![no_main]
//! `cargo fuzz run webhook`: see `ledger_fuzz::webhook`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::webhook(data);
});
