//! Sign-in providers: the Yandex OAuth client and the Telegram Login Widget check.

pub mod telegram;
pub mod yandex;
