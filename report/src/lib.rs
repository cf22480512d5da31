//! Report rendering: a [`vigil_model::PatrolReport`] as a self-contained HTML
//! page (inline SVG charts, no external assets), a Markdown digest for chat
//! tools, and JSON for machines, in English or Chinese.
//!
//! Owns presentation only: pure functions from the model to text. Does not
//! own what goes into a report (playbooks) or where it is stored or sent.
