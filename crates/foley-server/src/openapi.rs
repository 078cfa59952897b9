//! The OpenAPI document (utoipa), served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::files;
use crate::routes::infsh;
use crate::routes::kling;
use crate::routes::ops;
use crate::routes::stream;

#[derive(OpenApi)]
#[openapi(
    info(title = "foley", description = "Self-hosted video-to-audio: inference.sh-compatible and Kling-style APIs"),
    paths(
        infsh::run, infsh::list, infsh::get_task, infsh::cancel, infsh::delete_task, infsh::task_files, stream::stream,
        files::create, files::get,
        kling::create, kling::get, kling::list,
        ops::health, ops::models, ops::metrics, serve,
    ),
    components(schemas(infsh::RunBody, files::CreateFiles, files::NewFile, kling::KlingCreate, crate::types::TaskStatus)),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(document()).into_response()
}
