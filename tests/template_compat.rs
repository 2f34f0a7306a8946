//! The original's template tests (its test/test_script_templates.py, every case, written here as
//! data), plus the format-string spec/conversion cases its Python 2 accepted or refused, and the
//! rule that template-string scripts only see what the user defined.

use provision::template::{detect, render, Engine, Vars};

/// The original's `nodelib.substitute`: detect the marker, render, or return the text as is.
fn substitute(script: &str, vars: &Vars) -> Result<String, String> {
    match detect(script).map_err(|e| e.message)? {
        None => Ok(script.to_string()),
        Some(engine) => render(engine, script, vars).map_err(|e| {
            format!(
                "{}:{}: {}",
                e.line.unwrap_or(0),
                e.column.unwrap_or(0),
                e.message
            )
        }),
    }
}

/// The original's `submap` (what `-t` and `config.SUBMAP` gave it).
fn submap() -> Vars {
    let mut v = Vars::default();
    v.strings
        .insert("ci_user_host".into(), "testuser@testhost".into());
    v.bare.insert("ci_user_host".into());
    v
}

const FORMAT_STRING_SCRIPT: &str = "# provision-template-type: format-string
scp -pr -o StrictHostKeyChecking=no {ci_user_host}:pkg/libcloud .
";
const TEMPLATE_STRING_SCRIPT: &str = "# provision-template-type: template-string
scp -pr -o StrictHostKeyChecking=no ${ci_user_host}:pkg/libcloud .
";
const TEMPLATE_STRING_SCRIPT_SIMPLE: &str = " # provision-template-type: template-string
scp -pr -o StrictHostKeyChecking=no $ci_user_host:pkg/libcloud .";
const UNSUPPORTED_TYPE: &str = "# provision-template-type: mako
scp -pr -o StrictHostKeyChecking=no ${ci_user_host}:pkg/libcloud .
";
const NON_TEMPLATE: &str = "apt-get -y install python-setuptools python-dev gcc
";
const MULTIPLE_SPECIFIERS_ONE_LINE: &str = "
# provision-template-type: format-string provision-template-type: template-string
apt-get -y install python-setuptools python-dev gcc
";
const MULTIPLE_SPECIFIERS_MULTIPLE_LINES: &str = "
# provision-template-type: format-string
# provision-template-type: template-string
apt-get -y install python-setuptools python-dev gcc
";
const BASH_FUNCTION: &str = r#"# provision-template-type: template-string
download_file() {
  echo wget -q -O $DOWNLOAD_DIR/$1 $2
  wget -q -O $DOWNLOAD_DIR/$1 $2
  http_rc=$?
  if [[ "$http_rc" != "0" ]]; then
    echo "Download of $1 failed, return code was $http_rc"
    exit 1
  fi
  if [ ! -f $DOWNLOAD_DIR/$1 ]; then
    echo "Downloaded file $1 not found"
    exit 1
  fi
}
"#;
const AWK_FUNCTION: &str = "# provision-template-type: template-string
eth1=`ifconfig eth1 | grep -o -E 'inet addr:[0-9.]+' | awk -F: '{print $2}'`";

#[test]
fn the_originals_detection_cases() {
    let table: &[(&str, &str, Option<Engine>)] = &[
        (
            "format_strings_detection",
            FORMAT_STRING_SCRIPT,
            Some(Engine::FormatString),
        ),
        (
            "template_strings_detection",
            TEMPLATE_STRING_SCRIPT,
            Some(Engine::TemplateString),
        ),
        (
            "template_string_simple",
            TEMPLATE_STRING_SCRIPT_SIMPLE,
            Some(Engine::TemplateString),
        ),
        // the original's regex is greedy: on one line the last marker wins
        (
            "multiple_specifiers_one_line",
            MULTIPLE_SPECIFIERS_ONE_LINE,
            Some(Engine::TemplateString),
        ),
        // across lines the first line with a marker wins
        (
            "multiple_specifiers_multiple_lines",
            MULTIPLE_SPECIFIERS_MULTIPLE_LINES,
            Some(Engine::FormatString),
        ),
        ("non_template_script", NON_TEMPLATE, None),
        // `#.+` needs a character between '#' and the marker, as the original's regex
        (
            "no_space_after_hash",
            "#provision-template-type: tera\n",
            None,
        ),
        (
            "marker_after_code",
            "echo x # provision-template-type: tera\n",
            Some(Engine::Tera),
        ),
        (
            "no_hash_at_all",
            "echo provision-template-type: tera\n",
            None,
        ),
    ];
    for (case, script, want) in table {
        assert_eq!(detect(script).unwrap(), *want, "{case}");
    }
}

#[test]
fn the_originals_substitution_cases() {
    let table: &[(&str, &str, Result<&str, &str>)] = &[
        ("bash_function_unchanged", BASH_FUNCTION, Ok(BASH_FUNCTION)),
        ("awk_function_unchanged", AWK_FUNCTION, Ok(AWK_FUNCTION)),
        (
            "format_string_substitution",
            FORMAT_STRING_SCRIPT,
            Ok("# provision-template-type: format-string\nscp -pr -o StrictHostKeyChecking=no testuser@testhost:pkg/libcloud .\n"),
        ),
        (
            "template_string_substitution",
            TEMPLATE_STRING_SCRIPT,
            Ok("# provision-template-type: template-string\nscp -pr -o StrictHostKeyChecking=no testuser@testhost:pkg/libcloud .\n"),
        ),
        (
            "template_string_simple_substitution",
            TEMPLATE_STRING_SCRIPT_SIMPLE,
            Ok(" # provision-template-type: template-string\nscp -pr -o StrictHostKeyChecking=no testuser@testhost:pkg/libcloud ."),
        ),
        // the original raised KeyError; here it is a config error naming the type
        ("template_script_unsupported_type", UNSUPPORTED_TYPE, Err("unsupported template type 'mako'")),
        ("non_template_script", NON_TEMPLATE, Ok(NON_TEMPLATE)),
        (
            "multiple_specifiers_one_line (rendered as template-string)",
            MULTIPLE_SPECIFIERS_ONE_LINE,
            Ok(MULTIPLE_SPECIFIERS_ONE_LINE),
        ),
    ];
    for (case, script, want) in table {
        let got = substitute(script, &submap());
        match want {
            Ok(text) => assert_eq!(got.as_deref(), Ok(*text), "{case}"),
            Err(part) => {
                let e = got.expect_err(case);
                assert!(e.contains(part), "{case}: {e}");
            }
        }
    }
}

/// What `'{...}'.format(x='abc')` gives in the original's Python 2.7 (checked there), or the
/// line:column and reason it is refused with here (Python 2 raised ValueError/KeyError).
#[test]
fn format_string_specs_and_conversions_as_python_2() {
    let mut vars = Vars::default();
    vars.strings.insert("x".into(), "abc".into());
    vars.strings.insert("q".into(), "it's".into());
    vars.strings.insert("t".into(), "a\tb".into());
    vars.strings.insert("u".into(), "café".into());
    let table: &[(&str, Result<&str, &str>)] = &[
        ("{x}", Ok("abc")),
        ("{x!s}", Ok("abc")),
        ("{x!r}", Ok("'abc'")),
        ("{q!r}", Ok("\"it's\"")),
        ("{t!r}", Ok("'a\\tb'")),
        ("{u!r}", Ok("'caf\\xc3\\xa9'")),
        ("{x:>20}", Ok("                 abc")),
        ("{x:<6}|", Ok("abc   |")),
        ("{x:^7}", Ok("  abc  ")),
        ("{x:x<6}", Ok("abcxxx")),
        ("{x:<05}", Ok("abc00")),
        ("{x:.2}", Ok("ab")),
        ("{x:10.3s}|", Ok("abc       |")),
        ("{x!r:>7}", Ok("  'abc'")),
        ("{x:s}", Ok("abc")),
        ("{x:}", Ok("abc")),
        ("{{x}}", Ok("{x}")),
        ("{x:05}", Err("1:4: '0' (zero padding")),
        (
            "{x:=5}",
            Err("1:4: '=' alignment is not allowed for a string"),
        ),
        ("{x:+5}", Err("1:4: a sign is not allowed")),
        ("{x:#5}", Err("1:4: the alternate form '#'")),
        ("{x:,}", Err("1:4: a thousands separator")),
        ("ab {x:d}", Err("1:7: format type 'd' needs a number")),
        ("{x!a}", Err("1:4: unknown conversion '!a'")),
        (
            "{x:{w}}",
            Err("1:4: a replacement field inside a format spec"),
        ),
        ("{}", Err("1:2: '{}' is a positional field")),
        ("{0}", Err("1:2: '{0}' is a positional field")),
        ("{x.upper}", Err("1:2: '{x.upper}' is not a variable name")),
        ("{x[0]}", Err("1:2: '{x[0]}' is not a variable name")),
        ("a\n  {nope}", Err("2:4: undefined variable 'nope'")),
        ("{x", Err("1:1: '{' without a closing '}'")),
        ("x}", Err("1:2: single '}'")),
    ];
    for (tmpl, want) in table {
        let got = render(Engine::FormatString, tmpl, &vars).map_err(|e| {
            format!(
                "{}:{}: {}",
                e.line.unwrap_or(0),
                e.column.unwrap_or(0),
                e.message
            )
        });
        match want {
            Ok(text) => assert_eq!(got.as_deref(), Ok(*text), "{tmpl}"),
            Err(part) => {
                let e = got.expect_err(tmpl);
                assert!(e.starts_with(part), "{tmpl}: {e}");
            }
        }
    }
}

/// template-string replaces only the names in `bare` (the user's); every variable is reachable
/// as `${provision.NAME}`, which is no shell variable; format-string and tera see both.
#[test]
fn builtins_are_namespaced_and_shell_variables_keep_their_meaning() {
    let mut vars = submap();
    vars.strings.insert("image".into(), "debian-12".into());
    vars.strings.insert("node_name".into(), "web-1".into());
    vars.bare.insert("node_name".into());
    let t = "# provision-template-type: template-string\ndocker pull $image ${image} ${provision.image} $node_name ${provision.ci_user_host} ${provision.nope}\n";
    assert_eq!(
        render(Engine::TemplateString, t, &vars).unwrap(),
        "# provision-template-type: template-string\ndocker pull $image ${image} debian-12 web-1 testuser@testhost ${provision.nope}\n"
    );
    assert_eq!(
        render(Engine::FormatString, "{image} {provision.image}", &vars).unwrap(),
        "debian-12 debian-12"
    );
    assert_eq!(
        render(Engine::Tera, "{{ provision.image }} {{ image }}", &vars).unwrap(),
        "debian-12 debian-12"
    );
}
