using System.IO.MemoryMappedFiles;
using Onnx.Protobuf;

namespace OnnxOutlierTools.Tensors;

/// <summary>One external data file, memory-mapped read-only once and shared by all tensors in it.
/// Mapping reads nothing: pages are faulted in when a tensor's bytes are touched.</summary>
public sealed unsafe class ExternalDataFile : IDisposable
{
    private readonly FileStream? _stream;
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;

    public ExternalDataFile(string fullPath)
    {
        FullPath = fullPath;
        // Size and identity of the file actually opened (fstat): a link's own size, or a file replaced
        // between a check and the open, can never be mistaken for the data.
        _stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        var facts = IO.FileFacts.Of(_stream.SafeFileHandle);
        Identity = facts.Identity;
        Length = _stream.Length;
        if (Length == 0) { _stream.Dispose(); _stream = null; return; } // an empty file cannot be mapped; any non-empty read is out of range
        _map = MemoryMappedFile.CreateFromFile(_stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += _view.PointerOffset;
    }

    public string FullPath { get; }

    /// <summary>Device and inode of the mapped file (null where the OS has none).</summary>
    public IO.FileIdentity? Identity { get; }

    /// <summary>The open file (for kernel-side copies of unchanged tensors); null for an empty file.</summary>
    internal Microsoft.Win32.SafeHandles.SafeFileHandle? Handle => _stream?.SafeFileHandle;
    public long Length { get; }

    public ReadOnlySpan<byte> Slice(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_view is not null && _pointer == null, this);
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) is outside {FullPath} ({Length} bytes)");
        return length == 0 ? ReadOnlySpan<byte>.Empty : new ReadOnlySpan<byte>(_pointer + offset, length);
    }

    /// <summary>Copies [offset, offset + destination.Length) with positioned reads (pread), not through the mapping: the
    /// pages go through the page cache but never into this process's resident set, so streaming a tensor of any size
    /// (a fold that rescales every weight on its way to the output) keeps the process's memory at the chunk size.</summary>
    public void Read(long offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_view is not null && _pointer == null, this);
        if (offset < 0 || offset + destination.Length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + destination.Length}) is outside {FullPath} ({Length} bytes)");
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(_stream!.SafeFileHandle, destination, offset);
            if (n <= 0) throw new IOException($"{FullPath}: the file ended at {offset} bytes while {destination.Length} more were read (was it truncated?)");
            destination = destination[n..];
            offset += n;
        }
    }

    public void Dispose()
    {
        if (_view is not null && _pointer != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _pointer = null;
        }
        _view?.Dispose();
        _map?.Dispose();
        _stream?.Dispose();
    }
}

/// <summary>A tensor stored in an external data file (data_location = EXTERNAL).</summary>
public sealed class MappedTensor : Tensor
{
    private readonly ExternalDataFile _file;
    private readonly TensorProto _source;

    public MappedTensor(TensorProto source, ExternalDataFile file, long offset)
        : base((TensorDataType)source.DataType, source.Dims.ToArray())
    {
        _source = source;
        _file = file;
        Offset = offset;
    }

    public override TensorStorage Storage => TensorStorage.External;
    public override TensorProto Source => _source;
    public ExternalDataFile File => _file;
    public long Offset { get; }

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        if (offset < 0 || offset + length > ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        return _file.Slice(Offset + offset, length);
    }

    protected override void Read(long offset, Span<byte> destination) => _file.Read(Offset + offset, destination);
}

/// <summary>An external tensor whose data file is absent: shape and type are known (enough for
/// <c>inspect</c>), reading the data is an error naming the file.</summary>
public sealed class MissingExternalTensor(TensorProto source, string location, string reason)
    : Tensor((TensorDataType)source.DataType, source.Dims.ToArray())
{
    public string Location { get; } = location;
    public string Reason { get; } = reason;
    public override TensorStorage Storage => TensorStorage.External;
    public override TensorProto Source => source;
    public override ReadOnlySpan<byte> GetBytes(long offset, int length) =>
        throw new InvalidOperationException($"external data of tensor '{source.Name}' is unavailable: {Reason}");
}

/// <summary>The external_data entries of a TensorProto (location, offset, length).</summary>
public readonly record struct ExternalDataReference(string Location, long Offset, long? Length)
{
    public static ExternalDataReference Parse(TensorProto tensor)
    {
        string? location = null;
        long offset = 0;
        long? length = null;
        foreach (var entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset":
                    if (!long.TryParse(entry.Value, out offset) || offset < 0)
                        throw new TensorFormatException($"tensor '{tensor.Name}' has an invalid external offset '{entry.Value}'");
                    break;
                case "length":
                    if (!long.TryParse(entry.Value, out long l) || l < 0)
                        throw new TensorFormatException($"tensor '{tensor.Name}' has an invalid external length '{entry.Value}'");
                    length = l;
                    break;
            }
        }
        if (string.IsNullOrEmpty(location)) throw new TensorFormatException($"tensor '{tensor.Name}' is EXTERNAL but has no location");
        return new ExternalDataReference(location, offset, length);
    }
}
