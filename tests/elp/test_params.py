"""Parameter accounting on the published base-size configs (meta device: no weights needed)."""

from elp.params import adapter_report, parameter_table


def test_elp_set_is_about_ten_percent_of_each_base_backbone():
    rows = {(r["backbone"], r["method"]): r for r in parameter_table(("elp", "el"))}
    for backbone in ("WavLM Base+", "wav2vec 2.0 Base", "HuBERT Base", "Whisper base (encoder)"):
        assert 0.08 < rows[(backbone, "elp")]["ratio"] < 0.12
    wavlm = rows[("WavLM Base+", "el")]
    assert 90e6 < wavlm["backbone_params"] < 97e6
    # The authors report 9.13M trained parameters for E+L adapters on WavLM Base+.
    assert abs(wavlm["total"] - 9.13e6) / 9.13e6 < 0.02


def test_report_counts_each_component():
    report = adapter_report("wavlm", 768, 12, "elp", "emotion")
    assert report["e_adapters"] > 0 and report["l_adapters"] > 0 and report["p_adapter"] > 0
    assert report["total"] == report["e_adapters"] + report["l_adapters"] + report["p_adapter"] + report["head"]
    assert adapter_report("wavlm", 768, 12, "none", "emotion")["e_adapters"] == 0
