//! SST files (being written).
