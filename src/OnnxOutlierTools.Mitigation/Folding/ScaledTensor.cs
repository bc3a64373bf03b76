using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.InteropServices;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>The folding kernel: a floating-point tensor viewed as a [rows, columns] matrix (the last axis is the columns,
/// every other axis the rows) with every element multiplied by <c>rowScale[r] * columnScale[c]</c>, computed when its bytes
/// are read, chunk by chunk: the source (memory-mapped external data, usually) is never copied into memory, so a fold's
/// memory stays bounded by the chunk size whatever the model's size. Arithmetic is fp32 (the scale product in fp64, then
/// one fp32 multiply), with one rounding back to the stored type (fp32, fp16, bf16). Scaling a scaled tensor composes the
/// scales onto the original source, so a weight folded by several passes is still rounded only once.
/// <para>Rank 1 tensors (norm gains, biases) have one row: their scale is the column scale.</para></summary>
public sealed class ScaledTensor : Tensor
{
    private readonly double[]? _rowScale;
    private readonly double[]? _columnScale;

    private ScaledTensor(Tensor source, long rows, long columns, double[]? rowScale, double[]? columnScale)
        : base(source.DataType, source.Dims)
    {
        Source = source;
        Rows = rows;
        Columns = columns;
        _rowScale = rowScale;
        _columnScale = columnScale;
    }

    /// <summary>The unscaled tensor the bytes are computed from.</summary>
    public new Tensor Source { get; }
    public long Rows { get; }
    public long Columns { get; }
    public bool HasRowScale => _rowScale is not null;
    public bool HasColumnScale => _columnScale is not null;

    public override TensorStorage Storage => TensorStorage.Memory;

    /// <summary>Element types the kernel reads and writes.</summary>
    public static bool Supports(TensorDataType type) => type is TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16;

    /// <summary><paramref name="tensor"/> with row r multiplied by <paramref name="rowScale"/>[r] (null: 1) and column c by
    /// <paramref name="columnScale"/>[c] (null: 1). Rows are every axis but the last, columns the last axis. A
    /// <c>double[]</c> scale is kept, not copied (a site's linears share one vector: a deep model's rewrite holds one per
    /// site, not one per tensor): do not change it afterwards.</summary>
    public static Tensor Scale(Tensor tensor, IReadOnlyList<double>? rowScale, IReadOnlyList<double>? columnScale)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!Supports(tensor.DataType))
            throw new NotSupportedException($"a scale can be folded into FLOAT, FLOAT16 or BFLOAT16 tensors, not {tensor.DataType.OnnxName()}");
        if (tensor.Dims.Count == 0) throw new ArgumentException("a scalar has no channels to scale", nameof(tensor));
        long columns = tensor.Dims[^1];
        long rows = columns == 0 ? 0 : tensor.ElementCount / columns;
        if (rowScale is not null && rowScale.Count != rows) throw new ArgumentException($"{rowScale.Count} row scales for {rows} rows", nameof(rowScale));
        if (columnScale is not null && columnScale.Count != columns) throw new ArgumentException($"{columnScale.Count} column scales for {columns} columns", nameof(columnScale));
        foreach (var s in (rowScale ?? []).Concat(columnScale ?? []))
            if (!double.IsFinite(s) || s == 0) throw new ArgumentException($"scale {s} is not finite and non-zero");
        if (rowScale is null && columnScale is null) return tensor;
        if (tensor is ScaledTensor scaled)
            return new ScaledTensor(scaled.Source, rows, columns, Compose(scaled._rowScale, rowScale), Compose(scaled._columnScale, columnScale));
        return new ScaledTensor(tensor, rows, columns, Keep(rowScale), Keep(columnScale));
    }

    /// <summary>Rows multiplied by <paramref name="scale"/> (a per-input-channel scale of an [in, out] weight).</summary>
    public static Tensor ScaleRows(Tensor tensor, IReadOnlyList<double> scale) => Scale(tensor, scale, null);

    /// <summary>Columns (the last axis) multiplied by <paramref name="scale"/> (an [out, in] weight's input channels, an
    /// [in, out] weight's output channels, a gain or a bias).</summary>
    public static Tensor ScaleColumns(Tensor tensor, IReadOnlyList<double> scale) => Scale(tensor, null, scale);

    private static double[]? Keep(IReadOnlyList<double>? scale) => scale as double[] ?? scale?.ToArray();

    // The last product made on this thread: the linears of one site compose the same two vectors (q, k and v after a norm
    // fold and a smoothing of the same site), so they share one product as they shared the vectors.
    [ThreadStatic] private static (double[] First, IReadOnlyList<double> Second, double[] Product)? _lastProduct;

    private static double[]? Compose(double[]? first, IReadOnlyList<double>? second)
    {
        if (second is null) return first;
        if (first is null) return Keep(second);
        if (_lastProduct is { } last && ReferenceEquals(last.First, first) && ReferenceEquals(last.Second, second)) return last.Product;
        var product = new double[first.Length];
        for (int i = 0; i < product.Length; i++) product[i] = first[i] * second[i];
        _lastProduct = (first, second, product);
        return product;
    }

    /// <summary>max |x| per channel of this tensor, from the source's per-channel maxima (<paramref name="sourceMaxima"/>)
    /// without computing the scaled elements: when the only scale runs along the channel axis (rows when
    /// <paramref name="rowChannels"/>, else columns), every element of a channel takes one factor f, and the kernel's
    /// fp32 product then one rounding to the stored type are monotone in |x|, so the channel's largest result is
    /// round(max|x| * |f|). Null when the other axis is scaled as well (the maximum then depends on every element).</summary>
    internal double[]? ChannelMagnitudes(double[] sourceMaxima, bool rowChannels)
    {
        ArgumentNullException.ThrowIfNull(sourceMaxima);
        double[]? scale = rowChannels ? (_columnScale is null ? _rowScale : null) : (_rowScale is null ? _columnScale : null);
        if (scale is null) return null;
        if (scale.Length != sourceMaxima.Length) throw new ArgumentException($"{sourceMaxima.Length} maxima for {scale.Length} channels", nameof(sourceMaxima));
        var products = new float[scale.Length];
        for (int i = 0; i < products.Length; i++) products[i] = (float)sourceMaxima[i] * Math.Abs((float)scale[i]);
        var bytes = new byte[products.Length * ElementSize];
        Store(products, bytes);
        Load(bytes, products);
        return products.Select(v => (double)v).ToArray();
    }

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        var chunk = new byte[length];
        Read(offset, chunk);
        return chunk;
    }

    /// <summary>Streams the scaled bytes (the save path of a model of any size) through two reused buffers: chunk i is
    /// written on another thread while chunk i + 1 is read and scaled, so the rescaling hides behind the write, which
    /// the page cache's dirty-page throttling makes as slow as the disk once a save is a few GB.</summary>
    public override void CopyTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        const int ChunkBytes = 4 << 20;
        var pool = System.Buffers.ArrayPool<byte>.Shared;
        byte[] filling = pool.Rent(ChunkBytes), writing = pool.Rent(ChunkBytes);
        Task? pending = null;
        try
        {
            int size = ElementSize;
            int chunk = ChunkBytes / size * size;
            for (long offset = 0; offset < ByteLength; offset += chunk)
            {
                int n = (int)Math.Min(chunk, ByteLength - offset);
                Read(offset, filling.AsSpan(0, n));
                pending?.GetAwaiter().GetResult(); // the previous chunk is written (its exception, if any, surfaces here)
                (filling, writing) = (writing, filling);
                byte[] buffer = writing;
                pending = Task.Run(() => destination.Write(buffer, 0, n));
            }
            pending?.GetAwaiter().GetResult();
            pending = null;
        }
        finally
        {
            // A failed read leaves a write in flight: let it end before its buffer goes back to the pool.
            if (pending is not null) try { pending.Wait(); } catch (AggregateException) { }
            pool.Return(filling);
            pool.Return(writing);
        }
    }

    private int ElementSize => (int)DataType.ByteLength(1);

    // The column factors as float, computed once: most folds scale only rows or only columns.
    private float[]? _columnFactors;

    protected override void Read(long offset, Span<byte> destination)
    {
        int size = ElementSize;
        if (offset % size != 0 || destination.Length % size != 0)
            throw new ArgumentException($"reads of a scaled {DataType.OnnxName()} tensor must be whole elements");
        if (offset < 0 || offset + destination.Length > ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        Source.CopyTo(offset, destination);
        long first = offset / size;
        int count = destination.Length / size;
        if (_columnScale is not null && _rowScale is null)
            _columnFactors ??= _columnScale.Select(c => (float)c).ToArray();
        // Large reads (the save path's 4 MiB chunks) are scaled on every core, in slices of whole elements.
        const int SliceElements = 1 << 18;
        if (count <= SliceElements || Environment.ProcessorCount == 1)
        {
            ScaleInPlace(destination, first, count);
            return;
        }
        unsafe
        {
            fixed (byte* pointer = destination)
            {
                nint address = (nint)pointer;
                int slices = (count + SliceElements - 1) / SliceElements;
                Parallel.For(0, slices, i =>
                {
                    int start = i * SliceElements, n = Math.Min(SliceElements, count - start);
                    var part = new Span<byte>((byte*)address + (long)start * size, n * size);
                    ScaleInPlace(part, first + start, n);
                });
            }
        }
    }

    /// <summary>Scales <paramref name="count"/> elements starting at element <paramref name="first"/>, in place.</summary>
    private void ScaleInPlace(Span<byte> destination, long first, int count)
    {
        int size = ElementSize;
        // Scratch from the pool: a fold reads thousands of chunks, and fresh large arrays would pile up on the LOH.
        int scratch = Math.Min(count, (int)Math.Min(Columns, 1 << 16));
        var values = System.Buffers.ArrayPool<float>.Shared.Rent(scratch);
        var factors = _rowScale is not null && _columnScale is not null ? System.Buffers.ArrayPool<float>.Shared.Rent(scratch) : null;
        try
        {
            // One row segment at a time: a row's elements share the row factor, columns their column factors.
            for (int done = 0; done < count;)
            {
                long element = first + done;
                long row = element / Columns, column = element % Columns;
                int n = (int)Math.Min(Math.Min(count - done, Columns - column), scratch);
                var part = destination.Slice(done * size, n * size);
                var v = values.AsSpan(0, n);
                Load(part, v);
                if (_rowScale is null) TensorPrimitives.Multiply(v, _columnFactors.AsSpan((int)column, n), v);
                else if (_columnScale is null) TensorPrimitives.Multiply(v, (float)_rowScale[row], v);
                else
                {
                    double rowFactor = _rowScale[row];
                    for (int i = 0; i < n; i++) factors![i] = (float)(rowFactor * _columnScale[column + i]);
                    TensorPrimitives.Multiply(v, factors.AsSpan(0, n), v);
                }
                Store(v, part);
                done += n;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(values);
            if (factors is not null) System.Buffers.ArrayPool<float>.Shared.Return(factors);
        }
    }

    private void Load(ReadOnlySpan<byte> bytes, Span<float> values)
    {
        switch (DataType)
        {
            case TensorDataType.Float: MemoryMarshal.Cast<byte, float>(bytes).CopyTo(values); break;
            case TensorDataType.Float16: FloatConversion.ToSingle(MemoryMarshal.Cast<byte, Half>(bytes), values); break;
            default: FloatConversion.ToSingle(MemoryMarshal.Cast<byte, BFloat16>(bytes), values); break;
        }
    }

    private void Store(ReadOnlySpan<float> values, Span<byte> bytes)
    {
        switch (DataType)
        {
            case TensorDataType.Float: values.CopyTo(MemoryMarshal.Cast<byte, float>(bytes)); break;
            case TensorDataType.Float16: FloatConversion.ToHalf(values, MemoryMarshal.Cast<byte, Half>(bytes)); break;
            default: FloatConversion.ToBFloat16(values, MemoryMarshal.Cast<byte, BFloat16>(bytes)); break;
        }
    }
}
