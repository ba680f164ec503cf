"""The databuild binary for the rules in //bazel:defs.bzl.

`databuild_binary(name)` makes `@<name>//:databuild`: the binary named by the
environment variable `DATABUILD_BIN` (an absolute path) when set, else this
repository's Cargo build (`target/release/databuild`, else `target/debug/databuild`).
Build it first with `cargo build --release -p databuild`.
"""

def _databuild_binary_impl(rctx):
    root = rctx.path(Label("//bazel:repositories.bzl")).dirname.dirname
    candidates = []
    if rctx.os.environ.get("DATABUILD_BIN"):
        candidates.append(rctx.path(rctx.os.environ["DATABUILD_BIN"]))
    candidates.append(root.get_child("target").get_child("release").get_child("databuild"))
    candidates.append(root.get_child("target").get_child("debug").get_child("databuild"))
    found = None
    for c in candidates:
        if c.exists:
            found = c
            break
    if not found:
        fail("no databuild binary: looked at %s; build one with `cargo build --release -p databuild` or set DATABUILD_BIN" % ", ".join([str(c) for c in candidates]))
    rctx.symlink(found, "databuild")
    rctx.file("BUILD.bazel", 'exports_files(["databuild"], visibility = ["//visibility:public"])\n')

databuild_binary = repository_rule(
    implementation = _databuild_binary_impl,
    environ = ["DATABUILD_BIN"],
    local = True,
)
