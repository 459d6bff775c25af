// Extended attributes the store itself invents. CernVM-FS answers "magic" user.* xattrs
// (user.hash, user.pid, ...) on every file and, for root, lists them too; they describe the
// repository, not the layer, so a container must not see them. The names come from cvmfs's
// magic_xattr.cc. A layer that really carries one of these names loses it: a price worth paying.
const CVMFS_MAGIC_XATTRS: ReadonlySet<string> = new Set([
  'user.authz', 'user.catalog_counters', 'user.chunk_list', 'user.chunks', 'user.compression',
  'user.direct_io', 'user.expires', 'user.external_file', 'user.external_host', 'user.external_timeout',
  'user.fqrn', 'user.hash', 'user.host', 'user.host_list', 'user.inode_max', 'user.lhash',
  'user.logbuffer', 'user.maxfd', 'user.nclg', 'user.ndiropen', 'user.ndownload', 'user.nioerr',
  'user.nopen', 'user.pid', 'user.proxy', 'user.proxy_list', 'user.pubkeys', 'user.rawlink',
  'user.repo_counters', 'user.repo_metainfo', 'user.revision', 'user.root_hash', 'user.rx',
  'user.speed', 'user.tag', 'user.timeout', 'user.timeout_direct', 'user.timestamp_last_ioerr',
  'user.uptime', 'user.usedfd', 'user.useddirp', 'user.version', 'user.nreqs', 'user.hitrate',
  'user.proxy_url', 'user.ncleanup24',
]);

/** The store's invented attributes: never fetched from the store, never shown. */
export const HIDDEN_XATTRS: readonly string[] = [...CVMFS_MAGIC_XATTRS];

export function isHiddenXattr(name: string): boolean {
  return CVMFS_MAGIC_XATTRS.has(name);
}
