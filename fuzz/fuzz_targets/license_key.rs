#![no_main]
//! `cargo fuzz run license_key`: see `ledger_fuzz::license_key`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::license_key(data);
});
