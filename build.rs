//! Build script: link the module against the system LuaJIT shared library.
//!
//! mlua runs in `module` mode (it never links or embeds a Lua of its own). We
//! add a dynamic dependency on `libluajit-5.1.so.2`, the very library that
//! Debian's lua-nginx-module links, so the `lua_*` symbols resolve when nginx
//! dlopens us whatever the `load_module` order is. No second LuaJIT is linked:
//! the dynamic loader maps the library once per process.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LUAJIT_LIB_DIR");
    let dir = std::env::var("LUAJIT_LIB_DIR").ok().or_else(|| {
        let out = Command::new("pkg-config")
            .args(["--variable=libdir", "luajit"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    if let Some(dir) = dir.filter(|d| !d.is_empty()) {
        println!("cargo:rustc-link-search=native={dir}");
    }
    println!("cargo:rustc-link-lib=dylib=luajit-5.1");
}
