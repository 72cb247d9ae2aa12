from opuslm.cli.main import build_parser, main


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = main(["data", "import", "kaldi", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"opuslm: error: {tmp_path / 'nowhere'} is not a Kaldi data folder: wav.scp is missing"]


def test_every_subcommand_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"data", "demo"} <= set(commands)
    for name, sub in commands.items():
        assert sub.description, name


def test_synth_cli_writes_a_corpus_and_says_where(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--hours", "0.005", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"manifest: {tmp_path / 'c' / 'manifest.jsonl'}" in out
    assert (tmp_path / "c" / "corpus.json").is_file()
    # a second run with other settings refuses instead of mixing two corpora
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--hours", "0.01"]) == 2
    assert "--force" in capsys.readouterr().err
