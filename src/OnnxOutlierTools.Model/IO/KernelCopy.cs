using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OnnxOutlierTools.IO;

/// <summary>File-to-file copies inside the kernel (Linux copy_file_range): an unchanged external tensor
/// goes from the source data file to the new one without passing through this process, as `cp` does.
/// Any failure (another OS, a file system without support) reports false and the caller copies normally.</summary>
internal static class KernelCopy
{
    [DllImport("libc", SetLastError = true, EntryPoint = "copy_file_range")]
    private static extern nint CopyFileRange(int fdIn, ref long offIn, int fdOut, ref long offOut, nuint length, uint flags);

    private static bool _unavailable = !OperatingSystem.IsLinux();

    /// <summary>Appends <paramref name="length"/> bytes at <paramref name="sourceOffset"/> of
    /// <paramref name="source"/> to <paramref name="destination"/> at its current position, and advances it.</summary>
    public static bool TryAppend(SafeFileHandle source, long sourceOffset, FileStream destination, long length)
    {
        if (_unavailable || length == 0) return length == 0;
        destination.Flush();
        long start = destination.Position;
        bool addedSource = false, addedDestination = false;
        var destinationHandle = destination.SafeFileHandle;
        try
        {
            source.DangerousAddRef(ref addedSource);
            destinationHandle.DangerousAddRef(ref addedDestination);
            int fdIn = (int)source.DangerousGetHandle(), fdOut = (int)destinationHandle.DangerousGetHandle();
            long offIn = sourceOffset, offOut = start, left = length;
            while (left > 0)
            {
                nint copied = CopyFileRange(fdIn, ref offIn, fdOut, ref offOut, (nuint)Math.Min(left, 1L << 30), 0);
                if (copied <= 0)
                {
                    // Nothing copied yet: not supported here; fall back for good. Partway: let the caller redo it.
                    if (left == length) _unavailable = true;
                    destination.Position = start;
                    return false;
                }
                left -= copied;
            }
            destination.Position = start + length;
            return true;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true;
            destination.Position = start;
            return false;
        }
        finally
        {
            if (addedSource) source.DangerousRelease();
            if (addedDestination) destinationHandle.DangerousRelease();
        }
    }
}
