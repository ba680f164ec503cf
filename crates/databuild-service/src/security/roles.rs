//! Roles, and the role each route and gRPC method needs: `read` for every read and
//! stream, `build` to start work, `admin` to change what the log says directly.

use axum::http::Method;

/// What a principal may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Every read and stream.
    Read,
    /// Also build, request partitions, execute job graphs, create and cancel wants.
    Build,
    /// Also invalidate, register external data, append events, cancel.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Build, Role::Admin];

    /// The role's name: `read`, `build` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Build => "build",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health, the sign-in page, the dashboard's assets.
    Public,
    /// A principal with at least this role.
    Role(Role),
}

/// gRPC methods that start work.
const GRPC_BUILD: &[&str] = &[
    "/databuild.v1.DataBuildService/Build",
    "/databuild.v1.DataBuildService/Execute",
    "/databuild.v1.Catalog/RequestPartition",
    "/databuild.v1.Wants/CreateWants",
    "/databuild.v1.Wants/CancelWants",
];

/// gRPC methods (and HTTP routes) that only read, although they are POSTs.
const GRPC_READ_PREFIXES: &[&str] = &[
    "/databuild.v1.DataBuildService/AnalyzeGraph",
    "/databuild.v1.GraphLookup/",
    "/databuild.v1.Catalog/ListJobGraphRuns",
    "/databuild.v1.Catalog/ListPartitions",
    "/databuild.v1.Catalog/GetLatestPartitionEvent",
    "/databuild.v1.Catalog/QueryPartitionEvents",
    "/databuild.v1.Catalog/StreamPartitionEvents",
    "/databuild.v1.Catalog/GetActiveBuildStatus",
    "/databuild.v1.Catalog/GetDependencyGraph",
    "/databuild.v1.Wants/ListWants",
    "/databuild.v1.Wants/GetWant",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
];

const HTTP_READ_POSTS: &[&str] = &[
    "/api/v1/analyze",
    "/api/v1/lookup",
    "/api/v1/runs/list",
    "/api/v1/partitions/list",
    "/api/v1/partitions/latest",
    "/api/v1/partitions/dependencies",
    "/api/v1/events/query",
    "/api/v1/builds/active",
];

const HTTP_BUILD_POSTS: &[&str] = &[
    "/api/v1/execute",
    "/api/v1/build",
    "/api/v1/builds",
    "/api/v1/partitions/request",
    "/api/v1/wants",
    "/api/v1/wants/cancel",
    "/actions/build",
    "/actions/unwant",
    "/actions/cancel-backfill",
];

/// What `method path` needs. Anything not listed as a read or a build needs `admin`.
pub fn required_role(method: &Method, path: &str) -> Need {
    if path == "/api/v1/health" || path.starts_with("/assets/") || path == "/sign-in" {
        return Need::Public;
    }
    if path == "/sign-out" {
        return Need::Role(Role::Read);
    }
    if method == Method::GET || method == Method::HEAD {
        return Need::Role(Role::Read);
    }
    if GRPC_BUILD.contains(&path) || HTTP_BUILD_POSTS.contains(&path) {
        return Need::Role(Role::Build);
    }
    if GRPC_READ_PREFIXES.iter().any(|p| path.starts_with(p)) || HTTP_READ_POSTS.contains(&path) {
        return Need::Role(Role::Read);
    }
    Need::Role(Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_build_or_admin_and_unknown_posts_need_admin() {
        let post = Method::POST;
        assert_eq!(
            required_role(&Method::GET, "/api/v1/events/stream"),
            Need::Role(Role::Read)
        );
        assert_eq!(
            required_role(&post, "/api/v1/builds"),
            Need::Role(Role::Build)
        );
        assert_eq!(
            required_role(&post, "/actions/build"),
            Need::Role(Role::Build)
        );
        assert_eq!(
            required_role(&post, "/actions/cancel-backfill"),
            Need::Role(Role::Build)
        );
        assert_eq!(
            required_role(&post, "/api/v1/events"),
            Need::Role(Role::Admin)
        );
        assert_eq!(
            required_role(&post, "/actions/invalidate"),
            Need::Role(Role::Admin)
        );
        assert_eq!(
            required_role(&post, "/databuild.v1.Catalog/AppendPartitionEvent"),
            Need::Role(Role::Admin)
        );
        assert_eq!(
            required_role(&post, "/databuild.v1.Catalog/ListPartitions"),
            Need::Role(Role::Read)
        );
        assert_eq!(
            required_role(&post, "/anything/new"),
            Need::Role(Role::Admin)
        );
        for build in [
            "/api/v1/wants",
            "/api/v1/wants/cancel",
            "/databuild.v1.Wants/CreateWants",
            "/databuild.v1.Wants/CancelWants",
        ] {
            assert_eq!(
                required_role(&post, build),
                Need::Role(Role::Build),
                "{build}"
            );
        }
        for read in [
            "/databuild.v1.Wants/ListWants",
            "/databuild.v1.Wants/GetWant",
        ] {
            assert_eq!(required_role(&post, read), Need::Role(Role::Read), "{read}");
        }
        assert_eq!(
            required_role(&Method::GET, "/api/v1/wants/want-1"),
            Need::Role(Role::Read)
        );
        assert_eq!(required_role(&Method::GET, "/api/v1/health"), Need::Public);
        assert!(Role::Read < Role::Build && Role::Build < Role::Admin);
    }
}
