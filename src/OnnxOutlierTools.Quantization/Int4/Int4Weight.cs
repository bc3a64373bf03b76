using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>One channel-major piece of a quantized weight: <see cref="Channels"/> output channels, each with
/// <see cref="Length"/> codes (input channels from <see cref="FirstInput"/>) and <see cref="Blocks"/> scales and zero points.</summary>
internal sealed class QuantizedTile(int channels, int length, int blocks, bool withCodes)
{
    public int Channels { get; } = channels;
    public int Length { get; } = length;
    public int Blocks { get; } = blocks;
    /// <summary>False when only the scales and zero points were computed (their tensors need nothing else).</summary>
    public bool HasCodes { get; } = withCodes;
    public byte[] Codes { get; } = withCodes ? new byte[(long)channels * length] : [];
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
    public QuantizedTile ChannelTile(int tile, bool codes = true) => Cached(true, tile, codes, () =>
    {
        int n0 = tile * ChannelsPerTile, count = Math.Min(ChannelsPerTile, N - n0);
        var values = new float[(long)count * K];
        if (InputAxis == 1) WeightReader.Read(Source, (long)n0 * K, values);
        else
        {
            // [K, N] stored: the tile's columns, read a band of rows at a time and transposed band by band (each channel's
            // band is written as one run, so the writes stay in cache).
            const int Band = 64;
            var rows = new float[(long)Band * count];
            for (int k0 = 0; k0 < K; k0 += Band)
            {
                int band = Math.Min(Band, K - k0);
                for (int r = 0; r < band; r++) WeightReader.Read(Source, (long)(k0 + r) * N + n0, rows.AsSpan(r * count, count));
                for (int i = 0; i < count; i++)
                {
                    long target = (long)i * K + k0;
                    for (int r = 0; r < band; r++) values[target + r] = rows[r * count + i];
                }
            }
        }
        return Quantize(values, count, K, codes);
    });

    /// <summary>Blocks [tile * BlocksPerTile, ...) of every output channel (input rows of a stored [K, N] weight).</summary>
    public QuantizedTile BlockRowTile(int tile, bool codes = true)
    {
        if (InputAxis != 0) throw new InvalidOperationException("block-row tiles are read from a [K, N] weight");
        return Cached(false, tile, codes, () =>
        {
            int b0 = tile * BlocksPerTile, blocks = Math.Min(BlocksPerTile, KBlocks - b0);
            int r0 = b0 * BlockSize, rows = Math.Min(blocks * BlockSize, K - r0);
            var stored = new float[(long)rows * N];
            WeightReader.Read(Source, (long)r0 * N, stored);
            var values = new float[stored.LongLength];
            // Transposed in bands of 64 channels: each band's rows are read in runs, its writes stay in cache.
            const int Band = 64;
            for (int n0 = 0; n0 < N; n0 += Band)
            {
                int band = Math.Min(Band, N - n0);
                for (int r = 0; r < rows; r++)
                {
                    long source = (long)r * N + n0;
                    for (int n = 0; n < band; n++) values[(long)(n0 + n) * rows + r] = stored[source + n];
                }
            }
            return Quantize(values, N, rows, codes);
        });
    }

    public int ChannelTileCount => (N + ChannelsPerTile - 1) / ChannelsPerTile;
    public int BlockRowTileCount => (KBlocks + BlocksPerTile - 1) / BlocksPerTile;

    private QuantizedTile Quantize(float[] values, int channels, int length, bool codes)
    {
        int blocks = (length + BlockSize - 1) / BlockSize;
        var tile = new QuantizedTile(channels, length, blocks, codes);
        try
        {
            // Channels are independent: quantized on every core (each writes its own slices).
            Parallel.For(0, channels, c =>
            {
                var v = values.AsSpan(c * length, length);
                if (codes)
                    Int4BlockCodec.Quantize(v, BlockSize, Symmetric, ScaleType, tile.Codes.AsSpan(c * length, length), tile.Scales.AsSpan(c * blocks, blocks),
                        tile.ZeroPoints.AsSpan(c * blocks, blocks));
                else Int4BlockCodec.Parameters(v, BlockSize, Symmetric, ScaleType, tile.Scales.AsSpan(c * blocks, blocks), tile.ZeroPoints.AsSpan(c * blocks, blocks));
            });
        }
        catch (AggregateException ex) when (ex.InnerExceptions.FirstOrDefault() is Int4QuantizationException inner)
        {
            throw new Int4QuantizationException($"{Name}: {inner.Message}", inner);
        }
        return tile;
    }

    /// <summary>Drops the cached tile (a tensor read to its end calls this, so a finished weight holds no memory).</summary>
    public void Release()
    {
        lock (_gate) _last = null;
    }

    // The save reads one tensor's tiles in order, then the next tensor's: one cached tile serves every read of that tile.
    private QuantizedTile Cached(bool byChannels, int index, bool codes, Func<QuantizedTile> compute)
    {
        lock (_gate)
        {
            if (_last is { } last && last.ByChannels == byChannels && last.Index == index && (last.Tile.HasCodes || !codes)) return last.Tile;
            var tile = compute();
            _last = (byChannels, index, tile);
            return tile;
        }
    }
}
