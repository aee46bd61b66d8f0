"""Bad corpus folders: stray entries and empty documents are counted, missing ones are one InputError."""

import numpy as np
import pytest

from conftest import COMMON, TOPICS, UNKNOWN, write_corpus
from external_embeddings.text.corpus import TEST, TRAIN, load_corpus, strip_headers
from external_embeddings.errors import InputError

HEADERS = "From: someone@example.com\nNewsgroups: {topic}\nSubject: post\n\n"


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    return path


def refusal(root):
    with pytest.raises(InputError) as raised:
        load_corpus(root)
    return str(raised.value)


def texts_by_label(corpus, texts=None, labels=None):
    texts = corpus.texts if texts is None else texts
    labels = corpus.labels if labels is None else labels
    return sorted((corpus.label_names[label], text) for text, label in zip(texts, labels))


# ## Stray entries


def test_stray_entries_are_ignored_and_counted(tmp_path):
    root = write_corpus(tmp_path / "news", docs_per_topic=3)
    clean = load_corpus(root)
    write(root / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write(root / "README", "About this corpus.\n")
    (root / ".git").mkdir()
    write(root / "rec.space" / ".DS_Store", b"\x00\x01")
    write(root / "rec.space" / "README.txt", "notes\n")
    write(root / "rec.sport" / "12a", "not a number\n")
    write(root / "rec.sport" / "\u00b2", "a digit to Python, not to int()\n")
    (root / "sci.med" / "100").mkdir()  # a folder with a numeric name is no document
    corpus = load_corpus(root)
    assert corpus.ignored == 8 and corpus.empty == 0
    assert corpus.label_names == clean.label_names == list(TOPICS)
    assert texts_by_label(corpus) == texts_by_label(clean)


def test_stray_entries_beside_the_bydate_splits_are_counted(tmp_path):
    write_corpus(tmp_path / "news" / TRAIN, docs_per_topic=2)
    write_corpus(tmp_path / "news" / TEST, docs_per_topic=1)
    write(tmp_path / "news" / "20news-bydate.tar.gz", b"\x1f\x8b")
    write(tmp_path / "news" / TEST / "rec.space" / "Thumbs.db", b"\x00")
    corpus = load_corpus(tmp_path / "news")
    assert corpus.ignored == 2
    assert len(corpus.texts) == 6 and len(corpus.test_texts) == 3 and corpus.test_labels.tolist() == [0, 1, 2]


# ## Headers


def test_crlf_files_lose_their_headers_like_lf_files():
    lf = "From: a@b.c\nSubject: hi\n\nThe body.\nSecond line.\n"
    assert strip_headers(lf.replace("\n", "\r\n")) == strip_headers(lf) == "The body.\nSecond line.\n"
    assert strip_headers(lf.replace("\n", "\r")) == "The body.\nSecond line.\n"  # old Mac line ends


def test_a_file_without_a_blank_line_keeps_its_body():
    """Policy (corpus.py): with no blank line, only the leading "Key: value" lines are headers."""
    text = "From: a@b.c\nSubject: a long\n  subject line\nThe body starts here.\nIt goes on.\n"
    assert strip_headers(text) == "The body starts here.\nIt goes on.\n"
    assert strip_headers(text.replace("\n", "\r\n")) == "The body starts here.\nIt goes on.\n"
    assert strip_headers("No headers at all.\nJust text.") == "No headers at all.\nJust text."


def test_documents_without_a_blank_line_or_with_crlf_are_not_emptied(tmp_path):
    root = write_corpus(tmp_path / "news", docs_per_topic=2)
    write(root / "rec.space" / "1", "From: a@b.c\r\nNewsgroups: rec.space\r\n\r\nOrbit crlf body.\r\n")
    write(root / "rec.sport" / "3", "From: a@b.c\nNewsgroups: rec.sport\nHockey no blank line.\n")
    corpus = load_corpus(root)
    assert corpus.empty == 0 and len(corpus.texts) == 6
    by_label = dict((text, label) for label, text in texts_by_label(corpus))
    assert by_label["Orbit crlf body.\n"] == "rec.space"
    assert by_label["Hockey no blank line.\n"] == "rec.sport"
    assert not any("Newsgroups:" in text for text in corpus.texts)  # the label never leaks


def test_bytes_0x80_to_0xff_read_without_error(tmp_path):
    root = write_corpus(tmp_path / "news", docs_per_topic=2)
    body = b"caf\xe9 \x80\x93\x94 " + bytes(range(0x80, 0x100)) + b" na\xefve\n"
    write(root / "sci.med" / "5", b"From: a@b.c\nSubject: \xe9t\xe9\n\n" + body)
    corpus = load_corpus(root)
    assert body.decode("latin-1") in corpus.texts


# ## Empty documents


def test_documents_empty_after_the_headers_are_dropped_and_counted_and_labels_stay_aligned(tmp_path):
    root = tmp_path / "news"
    for number, (topic, content) in enumerate([
            ("rec.space", HEADERS + "orbit one"), ("rec.space", HEADERS), ("rec.space", HEADERS + "orbit two"),
            ("rec.sport", "From: a@b.c\nSubject: headers only, no blank line\n"), ("rec.sport", HEADERS + "goal one"),
            ("sci.med", ""), ("sci.med", HEADERS + " \n\t\n"), ("sci.med", HEADERS + "doctor one")], start=1):
        write(root / topic / str(number), content.format(topic=topic))
    corpus = load_corpus(root)
    assert corpus.empty == 4 and len(corpus.texts) == len(corpus.labels) == 4
    assert [(corpus.label_names[label], text) for text, label in zip(corpus.texts, corpus.labels)] == [
        ("rec.space", "orbit one"), ("rec.space", "orbit two"), ("rec.sport", "goal one"), ("sci.med", "doctor one")]


def test_a_category_whose_documents_are_all_empty_is_an_error_naming_it(tmp_path):
    root = write_corpus(tmp_path / "news", docs_per_topic=2)
    for document in (root / "sci.med").iterdir():
        document.write_text(HEADERS.format(topic="sci.med"))
    message = refusal(root)
    assert message.startswith(f"{root / 'sci.med'}: holds 2 documents, all empty once their headers are dropped")


# ## Missing, empty or incomplete folders


def test_a_missing_text_data_dir_is_an_error_naming_it(tmp_path):
    assert refusal(tmp_path / "nope") == f"{tmp_path / 'nope'}: does not exist; " \
        "point TEXT_DATA_DIR at the 20 Newsgroups folder"


def test_an_empty_text_data_dir_is_an_error_naming_it(tmp_path):
    (tmp_path / "news").mkdir()
    write(tmp_path / "news" / ".DS_Store", b"\x00")
    assert refusal(tmp_path / "news").startswith(f"{tmp_path / 'news'}: holds no category folders")


def test_a_file_as_text_data_dir_is_an_error_naming_it(tmp_path):
    assert refusal(write(tmp_path / "news.txt", "x")).startswith(f"{tmp_path / 'news.txt'}: is not a folder")


def test_a_category_without_documents_is_an_error_naming_it(tmp_path):
    root = write_corpus(tmp_path / "news", docs_per_topic=2)
    (root / "talk.empty").mkdir()
    write(root / "talk.empty" / "README", "nothing here\n")
    assert refusal(root).startswith(f"{root / 'talk.empty'}: holds no documents (files with numeric names)")


def test_a_single_category_is_an_error_naming_the_folder(tmp_path):
    root = tmp_path / "news"
    write(root / "rec.space" / "1", HEADERS.format(topic="rec.space") + "orbit")
    assert refusal(root).startswith(f"{root}: holds only the category 'rec.space'")


def test_an_empty_bydate_split_is_an_error_naming_it(tmp_path):
    write_corpus(tmp_path / "news" / TRAIN, docs_per_topic=2)
    (tmp_path / "news" / TEST).mkdir()
    assert refusal(tmp_path / "news").startswith(f"{tmp_path / 'news' / TEST}: holds no category folders")


def test_a_test_category_the_training_split_lacks_is_an_error_naming_it(tmp_path):
    write_corpus(tmp_path / "news" / TRAIN, docs_per_topic=2)
    test_root = write_corpus(tmp_path / "news" / TEST, docs_per_topic=1)
    write(test_root / "talk.new" / "9", HEADERS.format(topic="talk.new") + "new words")
    assert refusal(tmp_path / "news").startswith(f"{test_root / 'talk.new'}: is a category that the training split")


def test_a_corpus_inside_one_wrapping_folder_loads_as_the_corpus_itself(tmp_path):
    """``20_newsgroups/<category>/...`` (the original's archive) and a wrapped bydate root read as if unwrapped."""
    plain = load_corpus(write_corpus(tmp_path / "plain", docs_per_topic=3))
    wrapped = load_corpus(write_corpus(tmp_path / "a" / "20_newsgroups", docs_per_topic=3).parent)
    assert wrapped.label_names == plain.label_names and wrapped.texts == plain.texts
    write_corpus(tmp_path / "b" / "top" / TRAIN, docs_per_topic=3)
    write_corpus(tmp_path / "b" / "top" / TEST, docs_per_topic=1)
    bydate = load_corpus(tmp_path / "b")
    assert bydate.texts == plain.texts and len(bydate.test_texts) == 3


def test_a_good_corpus_still_loads_with_aligned_labels(tmp_path):
    corpus = load_corpus(write_corpus(tmp_path / "news", docs_per_topic=4))
    assert corpus.ignored == corpus.empty == 0 and len(corpus.texts) == 12
    assert np.bincount(corpus.labels).tolist() == [4, 4, 4]
    for text, label in zip(corpus.texts, corpus.labels):  # a text holds no other topic's words
        assert set(text.lower().rstrip(".\n").split()) <= set(TOPICS[corpus.label_names[label]] + COMMON + UNKNOWN)
