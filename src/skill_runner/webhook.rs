//! Webhook skill runners (being written).
