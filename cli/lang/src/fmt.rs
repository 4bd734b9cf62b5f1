//! The canonical layout of AVAP source (`avap fmt`). Being written.
