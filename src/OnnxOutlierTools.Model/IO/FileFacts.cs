using Microsoft.Win32.SafeHandles;
using Mono.Unix.Native;

namespace OnnxOutlierTools.IO;

/// <summary>What kind of file system entry a path names.</summary>
public enum FileKind
{
    Missing,
    Regular,
    Directory,
    SymbolicLink,
    CharacterDevice,
    BlockDevice,
    Fifo,
    Socket,
    Other,
}

/// <summary>The identity of a file: device and inode. Two paths (through links, hard links or
/// different spellings) name the same file exactly when their identities are equal.</summary>
public readonly record struct FileIdentity(ulong Device, ulong Inode)
{
    public override string ToString() => $"{Device}:{Inode}";
}

/// <summary>One stat(2) (or lstat(2)) result: the facts the I/O layer decides on. The BCL reports a
/// symbolic link's own size and has no file identity, device type or owner, so these come from the
/// POSIX calls (Mono.Unix); on Windows a BCL fallback gives kind and size and leaves identity null.</summary>
public sealed record FileFacts(FileKind Kind, long Length, FileIdentity? Identity, ulong DeviceNumber, uint? Mode, uint? Owner, uint? Group)
{
    public static readonly FileFacts Missing = new(FileKind.Missing, 0, null, 0, null, null, null);

    public bool Exists => Kind != FileKind.Missing;

    /// <summary>Facts of what <paramref name="path"/> names, following symbolic links (a dangling link is Missing).</summary>
    public static FileFacts Of(string path) => Query(path, follow: true);

    /// <summary>Facts of the directory entry itself (a symbolic link is reported as one).</summary>
    public static FileFacts OfEntry(string path) => Query(path, follow: false);

    /// <summary>Facts of an open file (fstat): exactly the file that was opened, whatever happened to its name since.</summary>
    public static FileFacts Of(SafeFileHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        if (OperatingSystem.IsWindows()) return new FileFacts(FileKind.Regular, RandomAccess.GetLength(handle), null, 0, null, null, null);
        int fd = (int)handle.DangerousGetHandle();
        return Syscall.fstat(fd, out var stat) == 0 ? FromStat(stat) : Missing;
    }

    /// <summary>True for the null device (/dev/null and any other node of the same device number).</summary>
    public bool IsNullDevice => Kind == FileKind.CharacterDevice && NullDeviceNumber is ulong n && DeviceNumber == n;

    private static readonly ulong? NullDeviceNumber = OperatingSystem.IsWindows() ? null
        : Syscall.stat("/dev/null", out var s) == 0 && (s.st_mode & FilePermissions.S_IFMT) == FilePermissions.S_IFCHR ? s.st_rdev : null;

    /// <summary>"a FIFO", "a block device", ... for messages.</summary>
    public string KindText => Kind switch
    {
        FileKind.Missing => "missing",
        FileKind.Regular => "a regular file",
        FileKind.Directory => "a directory",
        FileKind.SymbolicLink => "a symbolic link",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Fifo => "a FIFO (named pipe)",
        FileKind.Socket => "a socket",
        _ => "not a regular file",
    };

    private static FileFacts Query(string path, bool follow)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (OperatingSystem.IsWindows()) return QueryBcl(path, follow);
        int rc = follow ? Syscall.stat(path, out var stat) : Syscall.lstat(path, out stat);
        return rc == 0 ? FromStat(stat) : Missing;
    }

    private static FileFacts FromStat(Stat stat)
    {
        var kind = (stat.st_mode & FilePermissions.S_IFMT) switch
        {
            FilePermissions.S_IFREG => FileKind.Regular,
            FilePermissions.S_IFDIR => FileKind.Directory,
            FilePermissions.S_IFLNK => FileKind.SymbolicLink,
            FilePermissions.S_IFCHR => FileKind.CharacterDevice,
            FilePermissions.S_IFBLK => FileKind.BlockDevice,
            FilePermissions.S_IFIFO => FileKind.Fifo,
            FilePermissions.S_IFSOCK => FileKind.Socket,
            _ => FileKind.Other,
        };
        uint mode = (uint)(stat.st_mode & ~FilePermissions.S_IFMT);
        return new FileFacts(kind, stat.st_size, new FileIdentity(stat.st_dev, stat.st_ino), stat.st_rdev, mode, stat.st_uid, stat.st_gid);
    }

    private static FileFacts QueryBcl(string path, bool follow)
    {
        FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
        if (!info.Exists && info.LinkTarget is null) return Missing;
        if (info.LinkTarget is not null)
        {
            if (!follow) return new FileFacts(FileKind.SymbolicLink, 0, null, 0, null, null, null);
            info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
            if (!info.Exists) return Missing;
        }
        return info is DirectoryInfo
            ? new FileFacts(FileKind.Directory, 0, null, 0, null, null, null)
            : new FileFacts(FileKind.Regular, ((FileInfo)info).Length, null, 0, null, null, null);
    }
}

/// <summary>Path operations the BCL lacks: the real path (every symbolic link resolved), hard links,
/// copying owner and mode, and syncing a directory so that a rename in it is durable.</summary>
public static class FileSystemOps
{
    private const int MaxLinkHops = 40; // Linux's own limit (ELOOP)

    /// <summary>The absolute path with every symbolic link resolved, like realpath(3); the part of the
    /// path that does not exist yet is appended as written (so a future output path has a real form too).</summary>
    public static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        if (OperatingSystem.IsWindows()) return full;
        var pending = new Stack<string>(Components(full).Reverse());
        string current = "/";
        int hops = 0;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (part == ".") continue;
            if (part == "..") { current = Path.GetDirectoryName(current) ?? "/"; continue; }
            string next = Path.Join(current, part);
            var entry = FileFacts.OfEntry(next);
            if (entry.Kind != FileKind.SymbolicLink)
            {
                current = next;
                if (!entry.Exists) // nothing below a missing entry can be a link: append the rest
                {
                    while (pending.Count > 0) current = Path.Join(current, pending.Pop());
                    return Path.GetFullPath(current);
                }
                continue;
            }
            if (++hops > MaxLinkHops) throw new IOException($"too many levels of symbolic links in '{path}'");
            string? target = new FileInfo(next).LinkTarget;
            if (target is null) { current = next; continue; }
            foreach (string t in Components(target).Reverse()) pending.Push(t);
            if (Path.IsPathRooted(target)) current = "/";
        }
        return current;
    }

    /// <summary>True when <paramref name="path"/> is <paramref name="folder"/> or lies below it (both absolute, normalized).</summary>
    public static bool IsInside(string path, string folder)
    {
        string root = folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar;
        return path == folder || path.StartsWith(root, StringComparison.Ordinal);
    }

    /// <summary>Creates a hard link <paramref name="newPath"/> to <paramref name="existing"/>; false where the
    /// file system has none (FAT, some network and FUSE file systems) or the call is refused.</summary>
    public static bool TryCreateHardLink(string existing, string newPath)
    {
        if (OperatingSystem.IsWindows()) return false;
        return Syscall.link(existing, newPath) == 0;
    }

    /// <summary>Gives <paramref name="path"/> the permission bits (and, where allowed, the owner and group) of
    /// <paramref name="model"/>: replacing a file must not widen its permissions or change its owner.</summary>
    public static void CopyModeAndOwner(FileFacts model, string path)
    {
        if (OperatingSystem.IsWindows() || model.Mode is not uint mode) return;
        Syscall.chmod(path, (FilePermissions)(mode & 0xFFF)); // permission, setuid/setgid and sticky bits only
        if (model.Owner is uint uid && model.Group is uint gid) Syscall.chown(path, (int)uid, (int)gid); // refused unless root or the owner: fine
    }

    /// <summary>fsync(2) on a directory, so that renames in it survive a power loss; best effort.</summary>
    public static void SyncDirectory(string folder)
    {
        if (OperatingSystem.IsWindows()) return;
        int fd = Syscall.open(folder, OpenFlags.O_RDONLY | OpenFlags.O_DIRECTORY);
        if (fd < 0) return;
        Syscall.fsync(fd);
        Syscall.close(fd);
    }

    private static IEnumerable<string> Components(string path) =>
        path.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
}
