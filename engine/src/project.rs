//! A store as a wangge project ([`wangge_store::project`]), with the
//! engine's geodesic area for the `area_m2` columns it fills.

pub use wangge_store::project::{COMPLETE_HINT, Completed, check, fixable, key_column, require};

use crate::geom;
use crate::store::{Store, StoreError};

/// [`wangge_store::project::complete`] with areas from [`geom::area_m2`]:
/// adds what is missing and can be added, refuses the rest.
///
/// # Errors
/// [`StoreError::Layout`] with the problems that cannot be fixed, or store
/// errors.
pub fn complete(store: &mut Store) -> Result<Vec<Completed>, StoreError> {
    wangge_store::project::complete(store, &|g| {
        geom::as_multi(g.clone()).map(|m| geom::area_m2(&m))
    })
}
