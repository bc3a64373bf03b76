using System.Runtime.InteropServices;

namespace OnnxOutlierTools.IO;

/// <summary>Starts the disk writes of a durable save while it is still being written (Linux sync_file_range with
/// SYNC_FILE_RANGE_WRITE: asynchronous, it waits for nothing): the final fsync then waits only for the tail, and the
/// disk works while the CPU computes the next rescaled tensors, instead of everything being flushed after the last
/// byte, as <c>cp; sync</c> must. A hint only: where it is unsupported nothing changes but the timing.</summary>
internal sealed class EarlyWriteback
{
    private const uint SyncFileRangeWrite = 2;
    private const long Step = 64L << 20;

    [DllImport("libc", SetLastError = true, EntryPoint = "sync_file_range")]
    private static extern int SyncFileRange(int fd, long offset, long nbytes, uint flags);

    private static bool _unavailable = !OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("ONNX_OUTLIERS_EARLY_WRITEBACK") == "0";
    private readonly FileStream _stream;
    private long _started;

    private EarlyWriteback(FileStream stream) => _stream = stream;

    /// <summary>A writeback for <paramref name="stream"/> when the save is durable and the platform has the call, else null.</summary>
    public static EarlyWriteback? For(Stream stream, bool durable) => durable && !_unavailable && stream is FileStream file ? new(file) : null;

    /// <summary>Queues the bytes written since the last call for writing once at least 64 MiB have piled up.</summary>
    public void Written(long position)
    {
        if (_unavailable || position - _started < Step) return;
        _stream.Flush();
        bool added = false;
        var handle = _stream.SafeFileHandle;
        try
        {
            handle.DangerousAddRef(ref added);
            if (SyncFileRange((int)handle.DangerousGetHandle(), _started, position - _started, SyncFileRangeWrite) != 0) _unavailable = true;
            _started = position;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException) { _unavailable = true; }
        finally { if (added) handle.DangerousRelease(); }
    }
}
