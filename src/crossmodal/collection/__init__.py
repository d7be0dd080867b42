"""One index folder's state and its commits, behind one API (Collection).

    state.py       what the folder holds in memory: items, caption rows, the two stores, how
                   far into the log it has read, the changes not yet committed
    commits.py     the commit protocol: a log record or a new generation, compaction, reading
                   back what another writer committed
    writer.py      the folder's lock, catching up before a change, undoing a failed commit
    ingest.py      adding folders of files: plan, embed outside the lock, apply
    collection.py  Collection: open/create/add/remove/search/refresh/inspect/drop/stamp
    keyword_state.py  the keyword index (BM25) of the items: saved with each generation,
                   loaded on first use, kept in step with every change
    hybrid.py      search modes of a text query: vector, keyword, hybrid (rank fusion)
    hits.py        the search hit; search_modes.py the modes' names and the default

Below it, crossmodal.index is the store library (the VectorStore protocol, the faiss and
Milvus stores, the manifest, the log's file format, filters); nothing there imports this.
"""
