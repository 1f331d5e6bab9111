//! The sandbox chat page, compiled in.

/// `GET /sandbox`.
pub const PAGE: &str = include_str!("page.html");
