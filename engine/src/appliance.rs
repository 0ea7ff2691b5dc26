//! What the appliance image asks of the binary at boot: systemd-networkd files made from the
//! shelf's YAML (the management interface with its address; AoE ports up with no address
//! at all), so the one file on the ESCONFIG partition configures the whole box.

use ethershelf_config::{Config, ManagementAddress};
use std::fmt::Write as _;
use std::path::Path;

/// The networkd files for `config`: (file name, contents).
pub fn networkd_files(config: &Config) -> Vec<(String, String)> {
    let mut files = Vec::new();
    if let Some(m) = &config.management {
        let mut text = format!(
            "# Made by `ethershelf appliance-network` from the shelf's YAML: edit that file.\n\
             [Match]\nName={}\n\n[Network]\n",
            m.interface
        );
        match m.address {
            ManagementAddress::Dhcp => text.push_str("DHCP=yes\n"),
            ManagementAddress::Static(ip, len) => {
                let _ = writeln!(text, "Address={ip}/{len}");
                if let Some(g) = m.gateway {
                    let _ = writeln!(text, "Gateway={g}");
                }
            }
        }
        for d in &m.dns {
            let _ = writeln!(text, "DNS={d}");
        }
        files.push(("10-ethershelf-management.network".to_string(), text));
    }
    for p in &config.ports {
        files.push((
            format!("20-ethershelf-aoe-{}.network", p.interface),
            format!(
                "# Made by `ethershelf appliance-network`: an AoE port, up with no IP address.\n\
                 [Match]\nName={}\n\n[Link]\nRequiredForOnline=no\nARP=no\n\n[Network]\n\
                 LinkLocalAddressing=no\nIPv6AcceptRA=no\nLLDP=no\nEmitLLDP=no\n",
                p.interface
            ),
        ));
    }
    files
}

/// Writes the files into `dir` (made if needed); returns what it wrote, for the log.
pub fn write_networkd(config: &Config, dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in networkd_files(config) {
        std::fs::write(dir.join(&name), text)?;
        written.push(name);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_gets_its_address_and_aoe_ports_get_none() {
        let yaml = "shelf: 3\nports:\n  - interface: ens4\n  - interface: ens5\n\
                    management: { interface: ens3, address: 192.0.2.10/24, gateway: 192.0.2.1, dns: [192.0.2.53] }\n";
        let config = ethershelf_config::parse(yaml, "t.yaml").unwrap();
        let files = networkd_files(&config);
        assert_eq!(files.len(), 3);
        let (name, mgmt) = &files[0];
        assert_eq!(name, "10-ethershelf-management.network");
        assert!(mgmt.contains("Name=ens3\n") && mgmt.contains("Address=192.0.2.10/24\n"));
        assert!(mgmt.contains("Gateway=192.0.2.1\n") && mgmt.contains("DNS=192.0.2.53\n"));
        for (name, aoe) in &files[1..] {
            assert!(name.starts_with("20-ethershelf-aoe-ens"), "{name}");
            assert!(aoe.contains("LinkLocalAddressing=no") && !aoe.contains("Address="));
        }
        let dhcp = ethershelf_config::parse(
            "shelf: 3\nports: []\nmanagement: { interface: eth0, address: dhcp }\n",
            "t.yaml",
        )
        .unwrap();
        assert!(networkd_files(&dhcp)[0].1.contains("DHCP=yes"));
    }

    #[test]
    fn the_management_interface_cannot_be_an_aoe_port() {
        let e = ethershelf_config::parse(
            "shelf: 3\nports: [ { interface: ens4 } ]\nmanagement: { interface: ens4, address: dhcp }\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is an AoE port"), "{e}");
        let e = ethershelf_config::parse(
            "shelf: 3\nports: []\nmanagement: { interface: ens3, address: 10.0.0.1 }\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("prefix length"), "{e}");
    }
}
