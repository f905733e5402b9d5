import os

import pytest

from astertrack.config import ConfigError, load_config, render_config


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_without_any_file(tmp_path):
    config = load_config(tmp_path / "missing.conf" if False else None, environ={
        "ASTERTRACK_CONFIG": str(write(tmp_path / "astertrack.conf", "")),
    })
    assert config.get("agi", "listen_port") == 4573
    assert config.ami["port"] == 5038
    assert config.get("database", "url").startswith("sqlite:")


def test_layers_apply_in_order_file_then_dropins_then_environment(tmp_path):
    main = write(tmp_path / "astertrack.conf", "[agi]\nlisten_port = 5000\nring_timeout = 30\n[ami]\nusername = a\n")
    write(tmp_path / "conf.d" / "20-later.conf", "[agi]\nlisten_port = 5002\n")
    write(tmp_path / "conf.d" / "10-first.conf", "[agi]\nlisten_port = 5001\nring_timeout = 25\n")
    write(tmp_path / "conf.d" / "ignored.txt", "[agi]\nnot_a_key = 1\n")
    config = load_config(main, environ={"ASTERTRACK_AMI_USERNAME": "from-env"})
    assert config.agi["listen_port"] == 5002  # 20-later wins over 10-first over the main file
    assert config.agi["ring_timeout"] == 25
    assert config.ami["username"] == "from-env"
    assert config.files == [str(main), str(tmp_path / "conf.d" / "10-first.conf"),
                            str(tmp_path / "conf.d" / "20-later.conf")]


def test_environment_overrides_every_file(tmp_path):
    main = write(tmp_path / "astertrack.conf", "[database]\nurl = sqlite:////tmp/a.db\n")
    write(tmp_path / "conf.d" / "50-db.conf", "[database]\nurl = sqlite:////tmp/b.db\n")
    config = load_config(main, environ={"ASTERTRACK_DATABASE_URL": "postgresql://x@h/db"})
    assert config.database["url"] == "postgresql://x@h/db"


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    main = write(tmp_path / "astertrack.conf", "[agi]\nlisten_prot = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(main, environ={})
    assert "listen_prot" in str(err.value) and str(main) in str(err.value)


def test_unknown_section_and_invalid_value_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[agl\]"):
        load_config(write(tmp_path / "a.conf", "[agl]\nx = 1\n"), environ={})
    with pytest.raises(ConfigError, match=r"invalid value for \[agi\] listen_port"):
        load_config(write(tmp_path / "b.conf", "[agi]\nlisten_port = 99999\n"), environ={})
    with pytest.raises(ConfigError, match=r"environment variable ASTERTRACK_WEB_SECURE_COOKIES"):
        load_config(write(tmp_path / "c.conf", ""), environ={"ASTERTRACK_WEB_SECURE_COOKIES": "maybe"})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_config(write(tmp_path / "d.conf", ""), environ={"ASTERTRACK_WEB_COLOUR": "red"})


def test_broken_file_and_missing_explicit_file_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path / "a.conf", "listen_port = 1\n"), environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.conf", environ={})
    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"[web]\nsecret_key = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad, environ={})


def test_secrets_in_a_world_readable_file_are_warned_about(tmp_path, caplog):
    main = write(tmp_path / "astertrack.conf", "")
    secret = write(tmp_path / "conf.d" / "10-secrets.conf", "[ami]\nsecret = s3cret\n")
    os.chmod(secret, 0o644)
    config = load_config(main, environ={})
    assert config.ami["secret"] == "s3cret"
    assert "world-readable" in caplog.text
    caplog.clear()
    os.chmod(secret, 0o640)
    load_config(main, environ={})
    assert "world-readable" not in caplog.text


def test_render_config_round_trips_and_can_split_secrets(tmp_path):
    config = load_config(write(tmp_path / "astertrack.conf", "[ami]\nsecret = abc\n[agi]\nlisten_port = 4600\n"),
                         environ={})
    secrets = render_config(config.values, only_secrets=True)
    assert "secret = abc" in secrets and "listen_port" not in secrets
    again = load_config(write(tmp_path / "x" / "astertrack.conf", render_config(config.values)), environ={})
    assert again.values == config.values


def test_the_old_web_recordings_dir_key_is_read_as_the_one_recordings_dir(tmp_path, caplog):
    """Upgraded boxes still have ``[web] recordings_dir``: it sets ``[recordings] dir`` with a
    warning, so the admin and the listener can never disagree about where recordings are."""
    conf = tmp_path / "astertrack.conf"
    conf.write_text("[web]\nrecordings_dir = /srv/rec\n")
    config = load_config(conf, environ={})
    assert config.values["recordings"]["dir"] == "/srv/rec"
    assert "recordings_dir" not in config.values["web"]
    assert any("[recordings] dir" in record.getMessage() for record in caplog.records)


def test_the_default_database_is_where_earlier_releases_put_it(tmp_path):
    """An upgraded box must open the database it has, not start an empty one beside it."""
    config = load_config(write(tmp_path / "astertrack.conf", ""), environ={})
    assert config.values["database"]["url"] == "sqlite:////var/lib/astertrack/astertrack.db"
    assert config.values["recordings"]["dir"] == "/var/spool/asterisk/monitor"
