from utils import data


def test_manifest_lists_every_shipped_file_with_its_hash():
    assert data.check_manifest() == []


def test_data_budget():
    assert data.shipped_mib() < data.BUDGET_MIB


def test_every_shipped_file_is_credited_in_data_readme():
    readme = (data.REPO_ROOT / "data" / "README.md").read_text()
    for path in data.shipped_files():
        if path.startswith("images/") or path == "data/README.md":
            continue  # photographs are credited by name below; figures are the course's own
        top = path.split("/")[1]
        assert top in readme, f"{path} has no line in data/README.md"
    for photo in ["chelsea.png", "coffee.png", "astronaut.png"]:
        assert photo in readme
