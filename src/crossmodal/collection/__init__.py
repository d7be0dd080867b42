"""One index folder's state and its commits, behind one API (Collection).

    state.py       what the folder holds in memory: items, caption rows, the two stores, how
                   far into the log it has read, the changes not yet committed
    commits.py     the commit protocol: a log record or a new generation, compaction, reading
                   back what another writer committed
    writer.py      the folder's lock, catching up before a change, undoing a failed commit
    ingest.py      adding folders of files: plan, embed outside the lock, apply
    collection.py  Collection: open/create/add/remove/search/refresh/inspect/drop/stamp

Below it, crossmodal.index is the store library (the VectorStore protocol, the faiss and
Milvus stores, the manifest, the log's file format, filters); nothing there imports this.
"""
