//! Round-trip and no-panic property tests for the wire codec.

use super::*;
use proptest::prelude::*;

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn header() -> impl Strategy<Value = AoeHeaderRepr> {
    (
        mac(),
        mac(),
        0u8..16,
        any::<bool>(),
        proptest::option::of(any::<u8>()),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(dst, src, version, response, error, shelf, slot, cmd, tag)| AoeHeaderRepr {
                dst,
                src,
                version,
                response,
                error,
                shelf,
                slot,
                command: AoeCommand::from(cmd),
                tag,
            },
        )
}

proptest! {
    #[test]
    fn header_round_trip(h in header()) {
        let mut buf = [0u8; AOE_HEADER_LEN];
        let mut frame = AoeFrame::new_unchecked(&mut buf[..]);
        h.emit(&mut frame).unwrap();
        let parsed = AoeHeaderRepr::parse(&AoeFrame::new_checked(&buf[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, h);
    }

    #[test]
    fn ata_round_trip(aflags in any::<u8>(), ef in any::<u8>(), count in any::<u8>(), cmd in any::<u8>(), lba in any::<[u8; 6]>()) {
        let repr = AtaRepr { aflags: AtaFlags(aflags), err_feature: ef, sector_count: count, cmd_status: cmd, lba };
        let mut buf = [0xAAu8; ATA_HEADER_LEN + 4];
        repr.emit(&mut AtaPacket::new_unchecked(&mut buf[..])).unwrap();
        prop_assert_eq!(&buf[10..12], &[0, 0]);
        let parsed = AtaRepr::parse(&AtaPacket::new_checked(&buf[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        prop_assert_eq!(parsed.lba28(), parsed.lba48() & 0x0FFF_FFFF);
    }

    #[test]
    fn config_round_trip(bc in any::<u16>(), fw in any::<u16>(), sc in any::<u8>(), ccmd in 0u8..16, s in proptest::collection::vec(any::<u8>(), 0..=CONFIG_STRING_MAX)) {
        let repr = ConfigRepr { buffer_count: bc, firmware: fw, sector_count: sc, aoe_version: 1, command: ConfigCommand::from(ccmd), string: &s };
        let mut buf = vec![0u8; repr.buffer_len() + 3];
        repr.emit(&mut buf).unwrap();
        let packet = ConfigPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ConfigRepr::parse(&packet).unwrap(), repr);
    }

    #[test]
    fn mask_round_trip(mcmd in any::<u8>(), dirs in proptest::collection::vec((0u8..4, any::<[u8; 6]>()), 0..=255)) {
        let mut raw = Vec::new();
        for (cmd, m) in &dirs {
            let mut d = [0u8; MASK_DIRECTIVE_LEN];
            MaskDirective { command: DirectiveCommand::from(*cmd), mac: MacAddr(*m) }.emit(&mut d).unwrap();
            raw.extend_from_slice(&d);
        }
        let repr = MaskRepr::new(MaskCommand::from(mcmd), 0, dirs.len() as u8, &raw);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        let parsed = MaskRepr::parse(&MaskPacket::new_checked(&buf[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        let back: Vec<_> = parsed.directives().map(|d| (u8::from(d.command), d.mac.0)).collect();
        prop_assert_eq!(back, dirs);
    }

    #[test]
    fn reserve_round_trip(rcmd in any::<u8>(), macs in proptest::collection::vec(any::<[u8; 6]>(), 0..=255)) {
        let raw: Vec<u8> = macs.iter().flatten().copied().collect();
        let repr = ReserveRepr::new(ReserveCommand::from(rcmd), &raw);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        let parsed = ReserveRepr::parse(&ReservePacket::new_checked(&buf[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        prop_assert_eq!(parsed.macs().map(|m| m.0).collect::<Vec<_>>(), macs);
    }

    /// No input makes any parser panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(frame) = AoeFrame::new_checked(&bytes[..]) {
            let _ = AoeHeaderRepr::parse(&frame);
            let payload = frame.payload();
            if let Ok(p) = AtaPacket::new_checked(payload) { let _ = AtaRepr::parse(&p); let _ = p.data(); }
            if let Ok(p) = ConfigPacket::new_checked(payload) { let _ = ConfigRepr::parse(&p); }
            if let Ok(p) = MaskPacket::new_checked(payload) { if let Ok(r) = MaskRepr::parse(&p) { let _ = r.directives().count(); } }
            if let Ok(p) = ReservePacket::new_checked(payload) { if let Ok(r) = ReserveRepr::parse(&p) { let _ = r.macs().count(); } }
        }
        for parse in [
            |b: &[u8]| AtaPacket::new_checked(b).and_then(|p| AtaRepr::parse(&p)).is_ok(),
            |b: &[u8]| ConfigPacket::new_checked(b).and_then(|p| ConfigRepr::parse(&p)).is_ok(),
            |b: &[u8]| MaskPacket::new_checked(b).and_then(|p| MaskRepr::parse(&p)).is_ok(),
            |b: &[u8]| ReservePacket::new_checked(b).and_then(|p| ReserveRepr::parse(&p)).is_ok(),
        ] {
            let _ = parse(&bytes);
        }
    }

    /// Emit into any too-small buffer fails cleanly instead of panicking.
    #[test]
    fn emit_into_short_buffers_fails_cleanly(len in 0usize..40, h in header()) {
        let mut buf = vec![0u8; len];
        let mut frame = AoeFrame::new_unchecked(&mut buf[..]);
        prop_assert_eq!(h.emit(&mut frame).is_ok(), len >= AOE_HEADER_LEN);
        let repr = ConfigRepr { buffer_count: 1, firmware: 1, sector_count: 2, aoe_version: 1, command: ConfigCommand::Read, string: b"abcdefghij" };
        let mut cbuf = vec![0u8; len];
        prop_assert_eq!(repr.emit(&mut cbuf).is_ok(), len >= 18);
    }
}

#[test]
fn sectors_follow_mtu() {
    assert_eq!(max_sectors_for_mtu(1500), 2);
    assert_eq!(max_sectors_for_mtu(9000), 17);
    assert_eq!(max_sectors_for_mtu(4132), 8);
    assert_eq!(max_sectors_for_mtu(20), 0);
}

#[test]
fn lba28_masks_device_nibble() {
    let r = AtaRepr {
        lba: [0x01, 0x02, 0x03, 0xE4, 0, 0],
        ..Default::default()
    };
    assert_eq!(r.lba28(), 0x0403_0201);
    assert_eq!(r.lba48(), 0xE403_0201);
}

#[test]
fn config_rejects_lengths_past_frame_or_limit() {
    let mut buf = [0u8; 20];
    buf[6..8].copy_from_slice(&13u16.to_be_bytes());
    assert_eq!(
        ConfigRepr::parse(&ConfigPacket::new_checked(&buf[..]).unwrap()),
        Err(WireError::BadLength(13))
    );
    let mut big = vec![0u8; 1100];
    big[6..8].copy_from_slice(&1025u16.to_be_bytes());
    assert_eq!(
        ConfigRepr::parse(&ConfigPacket::new_checked(&big[..]).unwrap()),
        Err(WireError::BadLength(1025))
    );
}

#[test]
fn mac_parses_common_spellings() {
    let m: MacAddr = "52:54:00:ae:00:01".parse().unwrap();
    assert_eq!(m.0, [0x52, 0x54, 0, 0xae, 0, 1]);
    assert_eq!("525400ae0001".parse::<MacAddr>().unwrap(), m);
    assert_eq!(m.to_string(), "52:54:00:ae:00:01");
    assert!("52:54:00:ae:00".parse::<MacAddr>().is_err());
    assert!("zz:54:00:ae:00:01".parse::<MacAddr>().is_err());
}
