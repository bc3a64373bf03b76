using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace OnnxOutlierTools.IO;

/// <summary>
/// The files one save creates in its output folder, and the renames that publish them. Temporary files
/// stay open (and so locked: .NET takes flock(LOCK_EX) for FileShare.None on Unix) from creation until
/// they are renamed, which lets a later save tell a live temporary of another process from a stale one
/// left by a crash or SIGKILL. SIGINT, SIGTERM and SIGHUP during the save delete every file not yet
/// published; renames and that cleanup take the same lock, so a file is either published whole or removed.
/// </summary>
internal sealed partial class SaveTransaction : IDisposable
{
    private readonly object _gate = new();
    private readonly string _folder;
    private readonly Action<string, string>? _renameHook;
    private readonly List<(string Path, FileStream? Stream)> _pending = [];
    private readonly List<FileStream> _kept = [];
    private readonly List<PosixSignalRegistration> _signals = [];
    private bool _aborted;

    public SaveTransaction(string folder, Action<string, string>? renameHook)
    {
        _folder = folder;
        _renameHook = renameHook;
        Token = Guid.NewGuid().ToString("N")[..12];
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP })
        {
            try { _signals.Add(PosixSignalRegistration.Create(signal, OnSignal)); }
            catch (Exception ex) when (ex is PlatformNotSupportedException or IOException) { }
        }
    }

    /// <summary>12 hex digits naming this save's files.</summary>
    public string Token { get; }

    /// <summary>The hidden temporary name for <paramref name="fileName"/>: <c>.NAME.TOKEN.tmp</c>.</summary>
    public string TempPath(string fileName) => Path.Combine(_folder, $".{fileName}.{Token}.tmp");

    /// <summary>Creates a new file this save owns until it is published (renamed or kept); the stream
    /// stays open and locked until <see cref="Publish"/> or <see cref="Dispose"/>.</summary>
    public FileStream Create(string path, int bufferSize)
    {
        lock (_gate)
        {
            ThrowIfAborted();
            var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize);
            _pending.Add((path, stream));
            return stream;
        }
    }

    /// <summary>Registers a file this save made another way (a hard link) so that failure removes it.</summary>
    public void Track(string path)
    {
        lock (_gate) _pending.Add((path, null));
    }

    /// <summary>Renames <paramref name="source"/> (a file of this save) over <paramref name="destination"/>:
    /// from then on the file is published and no longer removed on failure.</summary>
    public void Publish(string source, string destination)
    {
        lock (_gate)
        {
            ThrowIfAborted();
            int i = _pending.FindIndex(p => p.Path == source);
            // Windows cannot rename an open file; elsewhere the stream closes after the rename, so the
            // lock covers the whole life of the temporary.
            if (i >= 0 && OperatingSystem.IsWindows()) _pending[i].Stream?.Dispose();
            _renameHook?.Invoke(source, destination);
            File.Move(source, destination, overwrite: true);
            if (i >= 0)
            {
                _pending[i].Stream?.Dispose();
                _pending.RemoveAt(i);
            }
        }
    }

    /// <summary>A file of this save that stays as it is (a published model references it): no longer
    /// removed on failure, but held open (locked) until the save ends so another save's cleanup leaves it.</summary>
    public void Keep(string path)
    {
        lock (_gate)
        {
            int i = _pending.FindIndex(p => p.Path == path);
            if (i < 0) return;
            if (_pending[i].Stream is { } stream) _kept.Add(stream);
            _pending.RemoveAt(i);
        }
    }

    /// <summary>Deletes a file that is no longer needed (best effort: it is unreferenced either way).</summary>
    public static void Delete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Removes temporaries (<c>.NAME.*.tmp</c>) of the given output names left by a save that
    /// died (Ctrl-C before this cleanup existed, SIGKILL, power loss). A temporary another live process
    /// holds is locked and stays. Returns the removed files.</summary>
    public static IReadOnlyList<string> RemoveStaleTemporaries(string folder, params string[] fileNames)
    {
        var removed = new List<string>();
        if (!Directory.Exists(folder)) return removed;
        foreach (string name in fileNames.Distinct())
        {
            string pattern = $".{name}.*.tmp";
            foreach (string file in SafeEnumerate(folder, pattern))
            {
                string middle = Path.GetFileName(file)[(name.Length + 2)..^4];
                if (TokenPattern().IsMatch(middle) && TryDeleteUnlocked(file)) removed.Add(file);
            }
        }
        return removed;
    }

    /// <summary>Removes data files of earlier interrupted pair saves (<c>DATA.TOKEN</c>, see
    /// <see cref="ModelWriter"/>) that the model now published does not reference.</summary>
    public static IReadOnlyList<string> RemoveStaleAlternates(string folder, string dataName, string? keep)
    {
        var removed = new List<string>();
        foreach (string file in SafeEnumerate(folder, dataName + ".*"))
        {
            string suffix = Path.GetFileName(file)[(dataName.Length + 1)..];
            if (!TokenPattern().IsMatch(suffix) || string.Equals(Path.GetFileName(file), keep, StringComparison.Ordinal)) continue;
            if (TryDeleteUnlocked(file)) removed.Add(file);
        }
        return removed;
    }

    private static IEnumerable<string> SafeEnumerate(string folder, string pattern)
    {
        try { return Directory.GetFiles(folder, pattern, new EnumerationOptions { MatchCasing = MatchCasing.CaseSensitive, AttributesToSkip = 0 }); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return []; }
    }

    private static bool TryDeleteUnlocked(string file)
    {
        if (FileFacts.OfEntry(file).Kind != FileKind.Regular) return false; // never follow or remove a link
        try
        {
            // Opening with FileShare.None fails while a live save holds its lock on the file.
            using (new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.None, 1)) { }
            File.Delete(file);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return false; }
    }

    private void ThrowIfAborted()
    {
        if (_aborted) throw new OperationCanceledException("the save was interrupted by a signal");
    }

    private void OnSignal(PosixSignalContext context)
    {
        lock (_gate)
        {
            _aborted = true;
            RemovePending();
        }
        // context.Cancel stays false: the process then terminates as the signal asks.
    }

    private void RemovePending()
    {
        foreach (var (path, stream) in _pending)
        {
            try { stream?.Dispose(); } catch (IOException) { }
            Delete(path);
        }
        _pending.Clear();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            RemovePending();
            foreach (var stream in _kept) stream.Dispose();
            _kept.Clear();
        }
        foreach (var s in _signals) s.Dispose();
        _signals.Clear();
    }

    [GeneratedRegex("^[0-9a-f]{12}$")]
    private static partial Regex TokenPattern();
}
