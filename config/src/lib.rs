use serde::Deserialize;
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub interface: String,
    #[serde(default)]
    pub mtu: Option<u32>,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cfg {
    pub shelf: u16,
    pub ports: Vec<Port>,
}
#[cfg(test)]
mod t {
    #[test]
    fn x() {
        for y in [
            "shelf: 1\nports:\n  - { interface: a, mtuu: 3 }\n",
            "shelf: 70000\nports: []\n",
            "shelf: 1\nports:\n  - interface: a\n    mtu: abc\n",
            "shelf: 1\nports: [\n",
        ] {
            let e = serde_saphyr::from_str::<super::Cfg>(y).unwrap_err();
            println!("DISPLAY: {e}\nDEBUG: {e:?}\nLOC: {:?}\n", e.location());
        }
    }
}
