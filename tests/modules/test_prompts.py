"""The prompt template bank: paper-style sentences at word/phrase/sentence levels, both polarities."""

import pytest

from tvau_lightning.modules.prompts import PromptBank


def test_expansion_counts_and_paper_example():
    bank = PromptBank()
    normal, abnormal = bank.class_sentences()
    n = len(bank.events) * len(bank.phrases)
    assert len(abnormal) == len(bank.abnormal_sentences) * n
    assert len(normal) == len(bank.normal_sentences) * n
    # the paper's Fig. 2 example, both polarities
    assert "a short surveillance clip where surveillance video of person jumping occurs" in abnormal
    assert "a short surveillance clip where surveillance video of person jumping not occurs" in normal
    assert not set(normal) & set(abnormal)


def test_custom_bank_and_validation():
    bank = PromptBank(events=["x"], phrases=["{}"], abnormal_sentences=["{} happens"], normal_sentences=["no {}"])
    assert bank.class_sentences() == (["no x"], ["x happens"])
    with pytest.raises(ValueError, match="exactly one"):
        PromptBank(phrases=["video of"])
    with pytest.raises(ValueError, match="must not be empty"):
        PromptBank(events=[])
    with pytest.raises(ValueError, match="polarity"):
        bank.sentences("weird")
