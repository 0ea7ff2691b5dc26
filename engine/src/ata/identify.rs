//! The 512-byte IDENTIFY DEVICE page (AOE-PROTOCOL.md section 2.7).

/// What the IDENTIFY page reports about a LUN.
#[derive(Debug, Clone)]
pub struct IdentifyInfo<'a> {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Serial number (at most 20 characters; longer is cut).
    pub serial: &'a str,
    /// Firmware revision (at most 8 characters).
    pub firmware: &'a str,
    /// Model (at most 40 characters).
    pub model: &'a str,
}

fn set_word(page: &mut [u8; 512], word: usize, value: u16) {
    page[word * 2..word * 2 + 2].copy_from_slice(&value.to_le_bytes());
}

/// ATA strings: two characters per word, the first in the high byte, space padded.
fn set_string(page: &mut [u8; 512], first_word: usize, words: usize, text: &str) {
    let field = &mut page[first_word * 2..(first_word + words) * 2];
    field.fill(b' ');
    for (i, byte) in text
        .bytes()
        .filter(|b| b.is_ascii_graphic() || *b == b' ')
        .take(words * 2)
        .enumerate()
    {
        field[i ^ 1] = byte;
    }
}

/// Builds the IDENTIFY page: LBA48 capacity, FLUSH CACHE (EXT) supported and enabled
/// because FLUSH really syncs, and the strings.
pub fn identify_page(info: &IdentifyInfo<'_>) -> [u8; 512] {
    let mut page = [0u8; 512];
    set_string(&mut page, 10, 10, info.serial);
    set_string(&mut page, 23, 4, info.firmware);
    set_string(&mut page, 27, 20, info.model);
    set_word(&mut page, 47, 0x8000);
    set_word(&mut page, 49, 0x0200); // LBA supported
    set_word(&mut page, 50, 0x4000);
    let lba28 = info.sectors.min(0x0FFF_FFFF) as u32;
    set_word(&mut page, 60, lba28 as u16);
    set_word(&mut page, 61, (lba28 >> 16) as u16);
    // 83 (supported) / 86 (enabled): bit 10 LBA48, 12 FLUSH CACHE, 13 FLUSH CACHE EXT.
    set_word(&mut page, 83, 0x4000 | 0x3400);
    // 82 (supported) / 85 (enabled): bit 0 SMART, answered for health reporting.
    set_word(&mut page, 82, 0x0001);
    set_word(&mut page, 84, 0x4000);
    set_word(&mut page, 85, 0x0001);
    set_word(&mut page, 86, 0x3400);
    set_word(&mut page, 87, 0x4000);
    set_word(&mut page, 93, 0x400B);
    let lba48 = info.sectors & 0xFFFF_FFFF_FFFF;
    for i in 0..4 {
        set_word(&mut page, 100 + i, (lba48 >> (16 * i)) as u16);
    }
    page
}
