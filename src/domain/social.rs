//! Social networks and the hosts their links may point to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SocialNetwork {
    Vk,
    Telegram,
    Yandex,
    Github,
    Ok,
}

impl SocialNetwork {
    pub fn as_str(self) -> &'static str {
        match self {
            SocialNetwork::Vk => "vk",
            SocialNetwork::Telegram => "telegram",
            SocialNetwork::Yandex => "yandex",
            SocialNetwork::Github => "github",
            SocialNetwork::Ok => "ok",
        }
    }

    pub fn hosts(self) -> &'static [&'static str] {
        match self {
            SocialNetwork::Vk => &["vk.com", "m.vk.com", "vk.ru"],
            SocialNetwork::Telegram => &["t.me", "telegram.me"],
            SocialNetwork::Yandex => &["yandex.ru", "ya.ru", "dzen.ru"],
            SocialNetwork::Github => &["github.com"],
            SocialNetwork::Ok => &["ok.ru"],
        }
    }

    /// Checks a link with a URL parser (not string matching): `https`, no user info, no port other
    /// than the default, and a host that is one of the network's or its `www.` form. Returns the
    /// normalised link.
    pub fn check_link(self, link: &str) -> Result<String, String> {
        let url = url::Url::parse(link.trim()).map_err(|_| "not a URL".to_owned())?;
        if url.scheme() != "https" {
            return Err("links must be https URLs".into());
        }
        if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
            return Err("links may not carry user info or a port".into());
        }
        let host = url.host_str().unwrap_or_default();
        let bare = host.strip_prefix("www.").unwrap_or(host);
        if !self.hosts().contains(&bare) {
            return Err(format!(
                "the link's host is not one of {}'s: {}",
                self.as_str(),
                self.hosts().join(", ")
            ));
        }
        Ok(url.to_string())
    }
}

text_column!(SocialNetwork);

impl FromStr for SocialNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vk" => Ok(SocialNetwork::Vk),
            "telegram" => Ok(SocialNetwork::Telegram),
            "yandex" => Ok(SocialNetwork::Yandex),
            "github" => Ok(SocialNetwork::Github),
            "ok" => Ok(SocialNetwork::Ok),
            other => Err(format!("unknown social network `{other}`")),
        }
    }
}

impl fmt::Display for SocialNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SocialNetwork::*;

    #[test]
    fn accepts_the_networks_hosts_and_their_www_forms() {
        assert_eq!(
            Vk.check_link("https://vk.com/ann").unwrap(),
            "https://vk.com/ann"
        );
        assert!(Vk.check_link("https://www.vk.com/ann").is_ok());
        assert!(Vk.check_link("https://M.VK.COM/ann").is_ok());
        assert!(Telegram.check_link("https://t.me/ann").is_ok());
        assert!(Yandex.check_link("https://dzen.ru/ann").is_ok());
        assert!(
            Github.check_link("https://github.com/ann:443").is_ok(),
            "a colon in the path is not a port"
        );
        assert!(
            Ok.check_link("https://ok.ru:443/ann").is_ok(),
            "the default port is no port"
        );
    }

    #[test]
    fn rejects_tricky_links() {
        for bad in [
            "http://vk.com/ann",
            "https://vk.com.evil.example/ann",
            "https://evil.example/vk.com",
            "https://vk.com@evil.example/",
            "https://ann@vk.com/",
            "https://ann:pw@vk.com/",
            "https://vk.com:8443/ann",
            "https://evilvk.com/",
            "https://www.www.vk.com/",
            "https://vk.com./ann",
            "javascript:alert(1)",
            "vk.com/ann",
            "https://t.me/ann",
        ] {
            assert!(Vk.check_link(bad).is_err(), "{bad}");
        }
    }
}
