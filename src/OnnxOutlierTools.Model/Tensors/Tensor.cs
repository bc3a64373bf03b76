using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Onnx.Protobuf;

namespace OnnxOutlierTools.Tensors;

/// <summary>Where a tensor's bytes live now.</summary>
public enum TensorStorage
{
    /// <summary>Inside the loaded protobuf (raw_data or typed fields).</summary>
    Embedded,
    /// <summary>In an external data file, memory-mapped and read on first touch.</summary>
    External,
    /// <summary>In managed memory, or computed on demand (a new or edited tensor).</summary>
    Memory,
}

/// <summary>
/// A tensor value behind one interface with lazy implementations: a no-copy view of a protobuf tensor,
/// a memory-mapped external-data tensor, an in-memory array, or a generator. Shape and data type are
/// known without reading any data. Bytes are little-endian in ONNX's raw_data layout (sub-byte types packed).
/// Spans returned by an embedded or external tensor stay valid while the owning model is alive.
/// </summary>
public abstract class Tensor
{
    protected Tensor(TensorDataType dataType, IReadOnlyList<long> dims)
    {
        DataType = dataType;
        Dims = dims;
        long count = 1;
        foreach (long d in dims)
        {
            if (d < 0) throw new TensorFormatException($"negative dimension {d} in shape [{string.Join(",", dims)}]");
            if (count != 0 && d > long.MaxValue / count)
                throw new TensorFormatException($"shape [{string.Join(",", dims)}] has more than {long.MaxValue} elements");
            count *= d;
        }
        // Checked here once so that ByteLength cannot overflow later.
        int bits = dataType.BitsPerElement();
        if (bits > 0 && count > (long.MaxValue - 7) / bits)
            throw new TensorFormatException($"{dataType.OnnxName()}[{string.Join(",", dims)}] is larger than {long.MaxValue} bytes");
        ElementCount = count;
    }

    public TensorDataType DataType { get; }
    public IReadOnlyList<long> Dims { get; }
    public long ElementCount { get; }
    public abstract TensorStorage Storage { get; }

    /// <summary>The protobuf this tensor was read from (doc_string, metadata_props and the original data
    /// representation survive a save through it); null for a tensor made in memory.</summary>
    public virtual TensorProto? Source => null;

    /// <summary>Byte size of the data (0 for STRING tensors, whose data has no fixed layout).</summary>
    public long ByteLength => DataType == TensorDataType.String ? 0 : DataType.ByteLength(ElementCount);

    /// <summary>A slice of the data. <paramref name="length"/> is an int because spans are; read larger
    /// tensors in chunks or through <see cref="CopyTo(Stream)"/>.</summary>
    public abstract ReadOnlySpan<byte> GetBytes(long offset, int length);

    /// <summary>Chunk size of the chunked reads (a multiple of every element size).</summary>
    public const int DefaultChunkBytes = 64 << 20;

    /// <summary>All bytes of a tensor below 2 GiB (a span cannot be longer); larger tensors are read with
    /// <see cref="CopyTo(long, Span{byte})"/>, <see cref="Chunks"/> or <see cref="CopyTo(Stream)"/>.</summary>
    public ReadOnlySpan<byte> Bytes
    {
        get
        {
            if (ByteLength > Array.MaxLength)
                throw new NotSupportedException($"{this} has {ByteLength} bytes, more than one span can hold ({Array.MaxLength}); " +
                    "read it in chunks (Chunks(), CopyTo(offset, destination) or CopyTo(stream)).");
            return GetBytes(0, (int)ByteLength);
        }
    }

    /// <summary>Copies the bytes at <paramref name="offset"/> (any offset, also beyond 2 GiB) into
    /// <paramref name="destination"/>, which must lie within the data.</summary>
    public void CopyTo(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset > ByteLength - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + destination.Length}) is outside the {ByteLength} bytes of {this}");
        if (destination.Length > 0) Read(offset, destination);
    }

    /// <summary>Copies elements starting at element <paramref name="elementOffset"/> into
    /// <paramref name="destination"/>; <typeparamref name="T"/> must match the data type (see <see cref="AsSpan{T}"/>).</summary>
    public void CopyTo<T>(long elementOffset, Span<T> destination) where T : unmanaged
    {
        ElementTypes.Check<T>(DataType);
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (elementOffset < 0 || elementOffset > ElementCount - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(elementOffset), $"elements [{elementOffset}, {elementOffset + destination.Length}) are outside the {ElementCount} of {this}");
        CopyTo(elementOffset * size, MemoryMarshal.AsBytes(destination));
    }

    /// <summary>Fills <paramref name="destination"/> from the data at <paramref name="offset"/> (checked by the
    /// caller). A tensor that computes its bytes writes them there directly.</summary>
    protected virtual void Read(long offset, Span<byte> destination) => GetBytes(offset, destination.Length).CopyTo(destination);

    /// <summary>The data in consecutive chunks of at most <paramref name="chunkBytes"/> bytes (rounded down
    /// to a multiple of 16, so no element straddles two chunks), for tensors of any size:
    /// <c>foreach (var chunk in tensor.Chunks()) ...</c>. Each chunk is valid until the next one.</summary>
    public TensorChunks Chunks(int chunkBytes = DefaultChunkBytes) => new(this, chunkBytes);

    /// <summary>True when both tensors hold the same type, shape and bytes (compared chunk by chunk).</summary>
    public bool DataEquals(Tensor other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (ReferenceEquals(this, other)) return true;
        if (DataType != other.DataType || !Dims.SequenceEqual(other.Dims)) return false;
        for (long offset = 0; offset < ByteLength; offset += DefaultChunkBytes)
        {
            int n = (int)Math.Min(DefaultChunkBytes, ByteLength - offset);
            if (!GetBytes(offset, n).SequenceEqual(other.GetBytes(offset, n))) return false;
        }
        return true;
    }

    /// <summary>Writes all data to <paramref name="destination"/> in chunks (works above 2 GiB).</summary>
    public virtual void CopyTo(Stream destination)
    {
        foreach (var chunk in Chunks(16 << 20)) destination.Write(chunk);
    }

    /// <summary>The data as elements of <typeparamref name="T"/>, which must match the data type
    /// (float, Half, BFloat16, sbyte, byte, short, ushort, int, uint, long, ulong, double, bool); below 2 GiB.</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        ElementTypes.Check<T>(DataType);
        return MemoryMarshal.Cast<byte, T>(Bytes);
    }

    /// <summary>Converts a floating-point tensor (float32/16, bfloat16, double) to a new float32 array, chunk
    /// by chunk (a float16 tensor above 2 GiB converts as long as the result fits in one array).</summary>
    public float[] ToSingleArray() => ToSingleArray(DefaultChunkBytes / 8);

    internal float[] ToSingleArray(int chunkElements)
    {
        if (DataType is not (TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16 or TensorDataType.Double))
            throw new NotSupportedException($"Cannot convert {DataType.OnnxName()} to float.");
        var result = new float[ArrayLength("float32")];
        for (long start = 0; start < ElementCount; start += chunkElements)
        {
            int n = (int)Math.Min(chunkElements, ElementCount - start);
            var target = result.AsSpan((int)start, n);
            switch (DataType)
            {
                case TensorDataType.Float: CopyTo(start, target); break;
                case TensorDataType.Float16: FloatConversion.ToSingle(Elements<Half>(start, n), target); break;
                case TensorDataType.BFloat16: FloatConversion.ToSingle(Elements<BFloat16>(start, n), target); break;
                default:
                    var d = Elements<double>(start, n);
                    for (int i = 0; i < d.Length; i++) target[i] = (float)d[i];
                    break;
            }
        }
        return result;
    }

    /// <summary>Integer tensors (int8..int64, uint8..uint32) as a new long array, converted chunk by chunk.</summary>
    public long[] ToInt64Array() => ToInt64Array(DefaultChunkBytes / 8);

    internal long[] ToInt64Array(int chunkElements)
    {
        if (DataType is not (TensorDataType.Int64 or TensorDataType.Int32 or TensorDataType.Int16 or TensorDataType.Int8
            or TensorDataType.UInt8 or TensorDataType.UInt16 or TensorDataType.UInt32 or TensorDataType.Bool))
            throw new NotSupportedException($"Cannot convert {DataType.OnnxName()} to int64.");
        var result = new long[ArrayLength("int64")];
        for (long start = 0; start < ElementCount; start += chunkElements)
        {
            int n = (int)Math.Min(chunkElements, ElementCount - start);
            var target = result.AsSpan((int)start, n);
            switch (DataType)
            {
                case TensorDataType.Int64: CopyTo(start, target); break;
                case TensorDataType.Int32: Widen(Elements<int>(start, n), target); break;
                case TensorDataType.Int16: Widen(Elements<short>(start, n), target); break;
                case TensorDataType.Int8: Widen(Elements<sbyte>(start, n), target); break;
                case TensorDataType.UInt16: Widen(Elements<ushort>(start, n), target); break;
                case TensorDataType.UInt32: Widen(Elements<uint>(start, n), target); break;
                default: Widen(Elements<byte>(start, n), target); break; // UInt8, Bool
            }
        }
        return result;

        static void Widen<T>(ReadOnlySpan<T> source, Span<long> destination) where T : unmanaged, System.Numerics.IBinaryInteger<T>
        {
            for (int i = 0; i < source.Length; i++) destination[i] = long.CreateTruncating(source[i]);
        }
    }

    /// <summary>Elements [start, start + count) as a span (one chunk, below 2 GiB).</summary>
    private ReadOnlySpan<T> Elements<T>(long start, int count) where T : unmanaged
    {
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        return MemoryMarshal.Cast<byte, T>(GetBytes(start * size, checked(count * size)));
    }

    /// <summary>The element count as an array length, or a clear error when no .NET array can hold it.</summary>
    private int ArrayLength(string elementName) => ElementCount <= Array.MaxLength
        ? (int)ElementCount
        : throw new NotSupportedException($"{this} has {ElementCount} elements, more than one .NET {elementName} array can hold ({Array.MaxLength}); " +
            "read it in chunks (CopyTo(elementOffset, destination) or Chunks()).");

    /// <summary>A writable in-memory copy (copy-on-write edits start here), copied chunk by chunk; tensors
    /// above 2 GiB cannot be one array and are refused with a clear message.</summary>
    public ArrayTensor ToArrayTensor()
    {
        if (ByteLength > Array.MaxLength)
            throw new NotSupportedException($"{this} has {ByteLength} bytes, more than one in-memory array can hold ({Array.MaxLength}); " +
                "edit it chunk by chunk into a new tensor (for example a GeneratedTensor) instead.");
        var data = new byte[ByteLength];
        for (long offset = 0; offset < data.Length; offset += DefaultChunkBytes)
            CopyTo(offset, data.AsSpan((int)offset, (int)Math.Min(DefaultChunkBytes, data.Length - offset)));
        return new ArrayTensor(DataType, Dims.ToArray(), data);
    }

    public override string ToString() => $"{DataType.OnnxName()}[{string.Join(",", Dims)}] ({Storage})";
}

/// <summary>The chunks of a tensor's data (see <see cref="Tensor.Chunks"/>): a span each, in order.</summary>
public readonly ref struct TensorChunks
{
    private readonly Tensor _tensor;
    private readonly int _chunkBytes;

    internal TensorChunks(Tensor tensor, int chunkBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 16);
        _tensor = tensor;
        _chunkBytes = chunkBytes & ~15;
    }

    public Enumerator GetEnumerator() => new(_tensor, _chunkBytes);

    public ref struct Enumerator
    {
        private readonly Tensor _tensor;
        private readonly int _chunkBytes;
        private long _next;
        private byte[]? _buffer;

        internal Enumerator(Tensor tensor, int chunkBytes) => (_tensor, _chunkBytes) = (tensor, chunkBytes);

        /// <summary>Byte offset of <see cref="Current"/> in the tensor's data.</summary>
        public long Offset { get; private set; }
        public ReadOnlySpan<byte> Current { get; private set; }

        public bool MoveNext()
        {
            if (_next >= _tensor.ByteLength) return false;
            int n = (int)Math.Min(_chunkBytes, _tensor.ByteLength - _next);
            Offset = _next;
            if (_tensor is GeneratedTensor)
            {
                // Computed bytes go into one reused buffer instead of a new array per chunk.
                if (_buffer is null || _buffer.Length < n) _buffer = new byte[n];
                _tensor.CopyTo(_next, _buffer.AsSpan(0, n));
                Current = _buffer.AsSpan(0, n);
            }
            else Current = _tensor.GetBytes(_next, n);
            _next += n;
            return true;
        }
    }
}

/// <summary>Maps element CLR types to ONNX data types for typed span access.</summary>
public static class ElementTypes
{
    public static void Check<T>(TensorDataType dataType) where T : unmanaged
    {
        if (!Matches<T>(dataType))
            throw new InvalidOperationException($"Tensor of {dataType.OnnxName()} cannot be viewed as {typeof(T).Name}.");
    }

    public static bool Matches<T>(TensorDataType dataType) where T : unmanaged => dataType switch
    {
        TensorDataType.Float => typeof(T) == typeof(float),
        TensorDataType.Float16 => typeof(T) == typeof(Half),
        TensorDataType.BFloat16 => typeof(T) == typeof(BFloat16),
        TensorDataType.Double => typeof(T) == typeof(double),
        TensorDataType.Int8 => typeof(T) == typeof(sbyte),
        TensorDataType.UInt8 => typeof(T) == typeof(byte),
        TensorDataType.Int16 => typeof(T) == typeof(short),
        TensorDataType.UInt16 => typeof(T) == typeof(ushort),
        TensorDataType.Int32 => typeof(T) == typeof(int),
        TensorDataType.UInt32 => typeof(T) == typeof(uint),
        TensorDataType.Int64 => typeof(T) == typeof(long),
        TensorDataType.UInt64 => typeof(T) == typeof(ulong),
        TensorDataType.Bool => typeof(T) == typeof(bool) || typeof(T) == typeof(byte),
        // Packed 4-bit and 8-bit float formats are exposed as their raw bytes.
        TensorDataType.Int4 or TensorDataType.UInt4 or TensorDataType.Float4E2M1
            or TensorDataType.Float8E4M3FN or TensorDataType.Float8E4M3FNUZ
            or TensorDataType.Float8E5M2 or TensorDataType.Float8E5M2FNUZ => typeof(T) == typeof(byte),
        _ => false,
    };

    public static TensorDataType For<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? TensorDataType.Float :
        typeof(T) == typeof(Half) ? TensorDataType.Float16 :
        typeof(T) == typeof(BFloat16) ? TensorDataType.BFloat16 :
        typeof(T) == typeof(double) ? TensorDataType.Double :
        typeof(T) == typeof(sbyte) ? TensorDataType.Int8 :
        typeof(T) == typeof(byte) ? TensorDataType.UInt8 :
        typeof(T) == typeof(short) ? TensorDataType.Int16 :
        typeof(T) == typeof(ushort) ? TensorDataType.UInt16 :
        typeof(T) == typeof(int) ? TensorDataType.Int32 :
        typeof(T) == typeof(uint) ? TensorDataType.UInt32 :
        typeof(T) == typeof(long) ? TensorDataType.Int64 :
        typeof(T) == typeof(ulong) ? TensorDataType.UInt64 :
        typeof(T) == typeof(bool) ? TensorDataType.Bool :
        throw new NotSupportedException($"No ONNX data type for {typeof(T).Name}.");
}

/// <summary>A tensor whose stored data does not match its declared type and shape.</summary>
public sealed class TensorFormatException(string message) : Exception(message);
