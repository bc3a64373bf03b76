using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>One channel-major piece of a quantized weight: <see cref="Channels"/> output channels, each with
/// <see cref="Length"/> codes (input channels from <see cref="FirstInput"/>) and <see cref="Blocks"/> scales and zero points.</summary>
internal sealed class QuantizedTile(int channels, int length, int blocks)
{
    public int Channels { get; } = channels;
    public int Length { get; } = length;
    public int Blocks { get; } = blocks;
    public byte[] Codes { get; } = new byte[(long)channels * length];
    public float[] Scales { get; } = new float[(long)channels * blocks];
    public byte[] ZeroPoints { get; } = new byte[(long)channels * blocks];
}

/// <summary>A linear's weight (a 2-D initializer in its stored layout, [K, N] or [N, K], any float type, any size) quantized
/// to int4 on demand, a tile at a time: the source is read when a tile is asked for and never held whole, so the int4 tensors
/// built on it (<see cref="Int4Tensors"/>) stream through a save like any other tensor. Quantization is per output channel,
/// per block of <c>blockSize</c> input channels (<see cref="Int4BlockCodec"/>).</summary>
internal sealed class Int4Weight
{
    /// <summary>Source elements per tile (about 4 MiB of fp32 scratch).</summary>
    public const long DefaultTileElements = 1 << 20;

    public Int4Weight(string name, Tensor source, int inputAxis, int blockSize, bool symmetric, TensorDataType scaleType,
        long tileElements = DefaultTileElements)
    {
        Name = name;
        if (source.Dims.Count != 2) throw new ArgumentException($"a 2-D weight was expected, got [{string.Join(",", source.Dims)}]");
        if (!WeightReader.Supports(source.DataType)) throw new NotSupportedException($"int4 quantizes FLOAT, FLOAT16 or BFLOAT16 weights, not {source.DataType.OnnxName()}");
        Source = source;
        InputAxis = inputAxis;
        K = checked((int)source.Dims[inputAxis]);
        N = checked((int)source.Dims[1 - inputAxis]);
        BlockSize = blockSize;
        Symmetric = symmetric;
        ScaleType = scaleType;
        KBlocks = (K + blockSize - 1) / blockSize;
        // Even tiles keep every tile's first packed element on a byte boundary.
        ChannelsPerTile = (int)Math.Max(2, tileElements / Math.Max(1, K)) & ~1;
        BlocksPerTile = (int)Math.Max(2, tileElements / ((long)blockSize * Math.Max(1, N))) & ~1;
    }

    /// <summary>The weight's initializer name (for messages).</summary>
    public string Name { get; }
    public Tensor Source { get; }
    /// <summary>0: stored [K, N] (MatMul's B); 1: stored [N, K] (Gemm transB=1, a transposed weight).</summary>
    public int InputAxis { get; }
    public int K { get; }
    public int N { get; }
    public int BlockSize { get; }
    public bool Symmetric { get; }
    public TensorDataType ScaleType { get; }
    public int KBlocks { get; }
    public int ChannelsPerTile { get; }
    public int BlocksPerTile { get; }

    private readonly object _gate = new();
    private (bool ByChannels, int Index, QuantizedTile Tile)? _last;

    /// <summary>Output channels [tile * ChannelsPerTile, ...), all K.</summary>
    public QuantizedTile ChannelTile(int tile) => Cached(true, tile, () =>
    {
        int n0 = tile * ChannelsPerTile, count = Math.Min(ChannelsPerTile, N - n0);
        var values = new float[(long)count * K];
        if (InputAxis == 1) WeightReader.Read(Source, (long)n0 * K, values);
        else
        {
            var row = new float[count];
            for (int k = 0; k < K; k++)
            {
                WeightReader.Read(Source, (long)k * N + n0, row);
                for (int i = 0; i < count; i++) values[(long)i * K + k] = row[i];
            }
        }
        return Quantize(values, count, K);
    });

    /// <summary>Blocks [tile * BlocksPerTile, ...) of every output channel (input rows of a stored [K, N] weight).</summary>
    public QuantizedTile BlockRowTile(int tile)
    {
        if (InputAxis != 0) throw new InvalidOperationException("block-row tiles are read from a [K, N] weight");
        return Cached(false, tile, () =>
        {
            int b0 = tile * BlocksPerTile, blocks = Math.Min(BlocksPerTile, KBlocks - b0);
            int r0 = b0 * BlockSize, rows = Math.Min(blocks * BlockSize, K - r0);
            var stored = new float[(long)rows * N];
            WeightReader.Read(Source, (long)r0 * N, stored);
            var values = new float[stored.LongLength];
            for (int r = 0; r < rows; r++)
                for (int n = 0; n < N; n++) values[(long)n * rows + r] = stored[(long)r * N + n];
            return Quantize(values, N, rows);
        });
    }

    public int ChannelTileCount => (N + ChannelsPerTile - 1) / ChannelsPerTile;
    public int BlockRowTileCount => (KBlocks + BlocksPerTile - 1) / BlocksPerTile;

    private QuantizedTile Quantize(float[] values, int channels, int length)
    {
        int blocks = (length + BlockSize - 1) / BlockSize;
        var tile = new QuantizedTile(channels, length, blocks);
        try
        {
            // Channels are independent: quantized on every core (each writes its own slices).
            Parallel.For(0, channels, c => Int4BlockCodec.Quantize(values.AsSpan(c * length, length), BlockSize, Symmetric, ScaleType,
                tile.Codes.AsSpan(c * length, length), tile.Scales.AsSpan(c * blocks, blocks), tile.ZeroPoints.AsSpan(c * blocks, blocks)));
        }
        catch (AggregateException ex) when (ex.InnerExceptions.FirstOrDefault() is Int4QuantizationException inner)
        {
            throw new Int4QuantizationException($"{Name}: {inner.Message}", inner);
        }
        return tile;
    }

    // The save reads one tensor's tiles in order, then the next tensor's: one cached tile serves every read of that tile.
    private QuantizedTile Cached(bool byChannels, int index, Func<QuantizedTile> compute)
    {
        lock (_gate)
        {
            if (_last is { } last && last.ByChannels == byChannels && last.Index == index) return last.Tile;
            var tile = compute();
            _last = (byChannels, index, tile);
            return tile;
        }
    }
}
