using System.Buffers;
using System.IO.MemoryMappedFiles;

namespace OnnxOutlierTools.IO;

/// <summary>A model file memory-mapped read-only, as <see cref="Memory{T}"/>: the reader parses it in place
/// and embedded raw_data tensors are views into it, so loading needs no copy of the file and pages are read
/// only when touched. The mapping lives as long as anything (a tensor's protobuf, the model) references it
/// and is unmapped by the finalizer, so a tensor can never outlive its bytes. The file must not be changed
/// in place while the model is in use (saves write a new file and rename it; they never do).</summary>
internal sealed unsafe class MappedFileMemory : MemoryManager<byte>
{
    private readonly MemoryMappedViewAccessor _view;
    private readonly int _length;
    private byte* _pointer;

    public MappedFileMemory(FileStream stream, int length)
    {
        _length = length;
        using var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        // The view keeps the pages mapped after the map object and the file handle are closed.
        _view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += _view.PointerOffset;
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing)
    {
        if (_pointer == null) return;
        _pointer = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
    }

    // CA2015: a span from GetSpan does not keep this object alive. Spans of a model's tensors are valid while
    // the model is alive (as documented on Tensor), and the model references this memory (Model.SourceBytes).
#pragma warning disable CA2015
    ~MappedFileMemory() => Dispose(false);
#pragma warning restore CA2015
}
