//! SMART: the signature registers and the READ DATA page.

/// lba1 (LBA mid) a SMART command carries, and RETURN STATUS leaves when healthy.
pub const SMART_LBA_MID: u8 = 0x4F;
/// lba2 (LBA high) a SMART command carries, and RETURN STATUS leaves when healthy.
pub const SMART_LBA_HIGH: u8 = 0xC2;

/// lba1 RETURN STATUS leaves when a threshold is exceeded (the device predicts failure).
pub const SMART_THRESHOLD_LBA_MID: u8 = 0xF4;
/// lba2 RETURN STATUS leaves when a threshold is exceeded.
pub const SMART_THRESHOLD_LBA_HIGH: u8 = 0x2C;

/// A SMART READ DATA page for a healthy device with no attributes, checksummed.
pub fn smart_read_data_page() -> [u8; 512] {
    let mut page = [0u8; 512];
    page[0..2].copy_from_slice(&0x0010u16.to_le_bytes()); // data structure revision
    page[362] = 0x00; // offline data collection: never started
    page[363] = 0x00; // self-test: completed without error
    page[367] = 0x00; // no offline/self-test capabilities
    page[368..370].copy_from_slice(&0x0003u16.to_le_bytes()); // saves data on power cycle
    page[370] = 0x01; // error logging supported
    let sum = page[..511].iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    page[511] = 0u8.wrapping_sub(sum);
    page
}
