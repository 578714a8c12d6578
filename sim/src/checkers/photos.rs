//! Photos: every photo an ad shows was checked by the media service (READY, uploaded for that
//! ad by its owner) and its object is in storage with the size and type declared; every
//! READY photo's object is there; every photo the gateway acknowledged as attached is on its
//! ad (the workload never removes one); storage took every upload made as the gateway said
//! (the signature the media service made is one storage accepts).

use super::{FinalState, Violation};

pub(crate) const NAME: &str = "photos";

pub fn check(state: &FinalState) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |detail: String| Violation {
        checker: NAME,
        detail,
    };
    let object_of = |p: &media::Photo| {
        let name = format!("{}/{}", state.bucket, p.object_key);
        match state.objects.get(&name) {
            None => Some(format!("its object {name} is not in storage")),
            Some((size, kind)) if *size != p.size_bytes || kind != &p.content_type => {
                Some(format!(
                    "its object holds {size} bytes of {kind}, not the {} bytes of {} declared",
                    p.size_bytes, p.content_type
                ))
            }
            Some(_) => None,
        }
    };
    for (ad_id, (_, ad)) in &state.ads {
        for photo_id in &ad.photos {
            let Some(p) = state.photos.get(photo_id) else {
                out.push(v(format!(
                    "ad {ad_id} shows photo {photo_id}, which the media service never issued"
                )));
                continue;
            };
            if p.state != "READY" || &p.ad_id != ad_id || p.owner_id != ad.owner_id {
                out.push(v(format!(
                    "ad {ad_id} shows photo {photo_id}, which is {} for ad {} of {}",
                    p.state, p.ad_id, p.owner_id
                )));
            } else if let Some(problem) = object_of(p) {
                out.push(v(format!(
                    "ad {ad_id} shows photo {photo_id}, but {problem}"
                )));
            }
        }
    }
    for p in state.photos.values().filter(|p| p.state == "READY") {
        if let Some(problem) = object_of(p) {
            out.push(v(format!("photo {} is READY, but {problem}", p.photo_id)));
        }
    }
    for (photo_id, status) in &state.uploads_refused {
        out.push(v(format!(
            "storage refused the upload of photo {photo_id} ({status}) made as the gateway said"
        )));
    }
    for (ad_id, photo_id) in &state.attached_photos {
        let shown = state
            .ads
            .get(ad_id)
            .is_some_and(|(_, ad)| ad.photos.contains(photo_id));
        if !shown {
            out.push(v(format!(
                "photo {photo_id} was acknowledged as attached to ad {ad_id}, which does not show it"
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(id: &str, state: &str) -> media::Photo {
        media::Photo {
            photo_id: id.into(),
            owner_id: "u1".into(),
            ad_id: "a1".into(),
            object_key: format!("photos/a1/{id}"),
            content_type: "image/png".into(),
            size_bytes: 3,
            state: state.into(),
            reason: String::new(),
            created_ms: 0,
            upload_expires_ms: 1,
            updated_ms: 0,
        }
    }

    fn world(photos: &[&str], stored: &[(&str, i64)]) -> FinalState {
        let ad = ad::Ad {
            ad_id: "a1".into(),
            owner_id: "u1".into(),
            title: "t".into(),
            description: String::new(),
            price_minor: 1,
            currency: "RUB".into(),
            category: "c".into(),
            region: "r".into(),
            photos: photos.iter().map(|p| (*p).to_owned()).collect(),
            status: "ACTIVE".into(),
            created_ms: 0,
            updated_ms: 0,
        };
        FinalState {
            ads: [("a1".to_owned(), (2, ad))].into(),
            photos: [("p1".to_owned(), photo("p1", "READY"))].into(),
            objects: stored
                .iter()
                .map(|(k, size)| (format!("b/photos/a1/{k}"), (*size, "image/png".to_owned())))
                .collect(),
            bucket: "b".into(),
            attached_photos: vec![("a1".into(), "p1".into())],
            ..FinalState::default()
        }
    }

    #[test]
    fn a_shown_photo_needs_its_checked_object() {
        assert!(check(&world(&["p1"], &[("p1", 3)])).is_empty());
        assert_eq!(check(&world(&["p1"], &[])).len(), 2, "object missing");
        assert_eq!(check(&world(&["p1"], &[("p1", 4)])).len(), 2, "wrong size");
        assert_eq!(
            check(&world(&["p9", "p1"], &[("p1", 3)])).len(),
            1,
            "unknown photo"
        );
        assert_eq!(
            check(&world(&[], &[("p1", 3)])).len(),
            1,
            "acknowledged, not shown"
        );
    }
}
