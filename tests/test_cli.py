from opuslm.cli.main import build_parser, main


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = main(["data", "import", "kaldi", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"opuslm: error: {tmp_path / 'nowhere'} is not a Kaldi data folder: wav.scp is missing"]


def test_every_subcommand_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"data", "tokenizers", "tokenize", "demo"} <= set(commands)
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


def test_tokenizer_and_tokenize_commands_end_to_end(small_corpus, tiny_tokenizers, tmp_path, capsys):
    from opuslm.tokenize.shards import TokenShards
    from opuslm.tokenize.text import load_text_tokenizer

    assert main(["tokenizers", "train-text", "--manifest", str(small_corpus), "--out", str(tmp_path / "text"),
                 "--vocab-size", "280"]) == 0
    assert len(load_text_tokenizer(tmp_path / "text")) == 280
    assert main(["tokenize", "--manifest", str(small_corpus), "--out", str(tmp_path / "tok"), "--text",
                 str(tmp_path / "text"), "--semantic", str(tiny_tokenizers.semantic), "--codec",
                 str(tiny_tokenizers.acoustic), "--shard-size", "64", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    shards = TokenShards(tmp_path / "tok")
    assert f"seen {len(shards)} = accepted {len(shards)} + rejected 0" in out
    # a re-run with another text tokenizer is refused with both hashes named
    assert main(["tokenize", "--manifest", str(small_corpus), "--out", str(tmp_path / "tok"), "--text",
                 str(tiny_tokenizers.text), "--semantic", str(tiny_tokenizers.semantic), "--codec",
                 str(tiny_tokenizers.acoustic)]) == 2
    assert "another text tokenizer" in capsys.readouterr().err
