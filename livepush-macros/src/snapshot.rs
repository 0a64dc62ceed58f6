//! Expansion snapshots: what users compile, formatted as Rust by `prettyplease`, compared with
//! `tests/expand/<name>.rs`. After a deliberate change of an expansion:
//! `LIVEPUSH_SNAPSHOTS=overwrite cargo test -p livepush-macros`, then read every changed file.

use std::path::PathBuf;

use proc_macro2::TokenStream;

/// Checks (or with `LIVEPUSH_SNAPSHOTS=overwrite`, writes) the snapshot `name`.
pub(crate) fn assert_expansion(name: &str, tokens: TokenStream) {
    let file: syn::File = match syn::parse2(tokens.clone()) {
        Ok(file) => file,
        Err(error) => panic!("the expansion {name} is not a list of items ({error}): {tokens}"),
    };
    let pretty = prettyplease::unparse(&file);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expand")
        .join(format!("{name}.rs"));
    let overwrite = std::env::var("LIVEPUSH_SNAPSHOTS").is_ok_and(|v| v == "overwrite");
    if overwrite {
        std::fs::create_dir_all(path.parent().expect("the snapshot directory"))
            .expect("create the snapshot directory");
        std::fs::write(&path, &pretty).expect("write the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "no snapshot {} ({error}); bless it with LIVEPUSH_SNAPSHOTS=overwrite, then read it:\n{pretty}",
            path.display()
        )
    });
    assert!(
        expected == pretty,
        "the expansion {name} changed; if that is deliberate, bless it with \
         LIVEPUSH_SNAPSHOTS=overwrite and read the diff.\n--- {}\n{expected}\n--- now\n{pretty}",
        path.display()
    );
}
