use super::*;
use crate::wire::{AtaFlags, AtaRepr};

fn req(cmd: u8, count: u8, lba: [u8; 6]) -> AtaRepr {
    AtaRepr {
        aflags: AtaFlags(0),
        err_feature: 0,
        sector_count: count,
        cmd_status: cmd,
        lba,
    }
}

#[test]
fn reads_and_writes_decode_with_lba28_masking() {
    let r = decode(&req(0x20, 2, [1, 0, 0, 0xE0, 0, 0]), 100, 2, 0, false);
    assert_eq!(r, Ok(AtaCommand::Read { lba: 1, count: 2 }));
    let w = decode(
        &req(0x34, 17, [0, 1, 0, 0, 0, 0]),
        1000,
        17,
        17 * 512,
        false,
    );
    assert_eq!(
        w,
        Ok(AtaCommand::Write {
            lba: 256,
            count: 17
        })
    );
}

#[test]
fn refusals_map_to_the_right_error_bits() {
    let cases = [
        (
            decode(&req(0x24, 3, [0; 6]), 100, 2, 0, false),
            AtaRejection::BadCount(3),
        ),
        (
            decode(&req(0x24, 0, [0; 6]), 100, 2, 0, false),
            AtaRejection::BadCount(0),
        ),
        (
            decode(&req(0x24, 2, [99, 0, 0, 0, 0, 0]), 100, 2, 0, false),
            AtaRejection::OutOfRange,
        ),
        (
            decode(&req(0x34, 2, [0; 6]), 100, 2, 1000, false),
            AtaRejection::ShortPayload,
        ),
        (
            decode(&req(0x34, 2, [0; 6]), 100, 2, 1024, true),
            AtaRejection::ReadOnly,
        ),
        (
            decode(&req(0xC8, 1, [0; 6]), 100, 2, 0, false),
            AtaRejection::Unsupported(0xC8),
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want));
    }
    assert_eq!(AtaRejection::OutOfRange.error_bits(), ERROR_IDNF);
    assert_eq!(AtaRejection::BadCount(3).error_bits(), ERROR_ABRT);
    // 48-bit LBAs near the top never overflow.
    let top = decode(&req(0x24, 2, [0xff; 6]), u64::MAX, 2, 0, false);
    assert_eq!(
        top,
        Ok(AtaCommand::Read {
            lba: 0xFFFF_FFFF_FFFF,
            count: 2
        })
    );
}

#[test]
fn smart_needs_its_signature() {
    let mut s = req(0xB0, 0, [0, SMART_LBA_MID, SMART_LBA_HIGH, 0, 0, 0]);
    s.err_feature = 0xDA;
    assert_eq!(
        decode(&s, 1, 2, 0, false),
        Ok(AtaCommand::Smart(SmartCommand::ReturnStatus))
    );
    s.lba[1] = 0;
    assert!(decode(&s, 1, 2, 0, false).is_err());
    let page = smart_read_data_page();
    assert_eq!(page.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
}

#[test]
fn identify_page_layout() {
    let page = identify_page(&IdentifyInfo {
        sectors: 0x1_2345_6789,
        serial: "1.0:abcd",
        firmware: "0.1.0",
        model: "ethershelf",
    });
    let word = |w: usize| u16::from_le_bytes([page[2 * w], page[2 * w + 1]]);
    assert_eq!(word(83) & 0x3400, 0x3400);
    assert_eq!(word(86) & 0x3400, 0x3400);
    assert_eq!((word(60), word(61)), (0xFFFF, 0x0FFF));
    let lba48 = (0..4).fold(0u64, |acc, i| acc | (word(100 + i) as u64) << (16 * i));
    assert_eq!(lba48, 0x1_2345_6789);
    // Strings are byte-swapped per word and space padded.
    assert_eq!(&page[54..64], b"teehsrehfl");
    assert_eq!(page[64], b' ');
    assert_eq!(&page[20..24], b".1:0");
}
