#![no_main]
//! `cargo fuzz run events`: see `ledger_fuzz::events`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::events(data);
});
