// The listings the kernel is paging through, kept apart from the metadata cache. A listing
// bigger than the cache's whole budget is not kept there, and without this every READDIR page
// (and every rewind to offset 0) would list the whole directory from the store again: one
// reader of a 100,000-entry directory could then keep the pool busy for minutes. They are
// bounded in bytes too, shared by every layer of the process; the newest one is kept whatever
// its size, so a directory bigger than the whole budget is still listed once per pass.
import type { Listing } from './records.js';

export class PagedListings {
  private readonly byKey = new Map<string, Listing>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string): Listing | undefined {
    const l = this.byKey.get(key);
    if (l) {
      this.byKey.delete(key);
      this.byKey.set(key, l);
    }
    return l;
  }

  set(key: string, l: Listing): void {
    const old = this.byKey.get(key);
    if (old) {
      this.bytes -= old.bytes;
      this.byKey.delete(key);
    }
    this.byKey.set(key, l);
    this.bytes += l.bytes;
    while (this.bytes > this.maxBytes && this.byKey.size > 1) {
      const [k, oldest] = this.byKey.entries().next().value as [string, Listing];
      this.byKey.delete(k);
      this.bytes -= oldest.bytes;
    }
  }

  /** Drops the listings of one layer (its keys start with prefix). */
  dropLayer(prefix: string): void {
    for (const [k, l] of this.byKey) {
      if (!k.startsWith(prefix)) continue;
      this.byKey.delete(k);
      this.bytes -= l.bytes;
    }
  }

  get heldBytes(): number {
    return this.bytes;
  }
}
