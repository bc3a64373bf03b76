using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>A tensor computed tile by tile when read: every tile but the last has the same byte length, and a tile's bytes
/// come from <c>render</c> (one tile of an <see cref="Int4Weight"/>). Nothing is held but the tile being read.</summary>
internal sealed class TiledTensor : Tensor
{
    private readonly long _tileBytes;
    private readonly int _tiles;
    private readonly Func<int, byte[]> _render;
    private int _lastIndex = -1;
    private byte[] _last = [];

    private readonly Action? _release;

    /// <param name="release">Called when the tensor has been read to its end (frees the weight's cached tile).</param>
    public TiledTensor(TensorDataType type, long[] dims, long tileBytes, int tiles, Func<int, byte[]> render, Action? release = null) : base(type, dims)
    {
        _tileBytes = tileBytes;
        _tiles = tiles;
        _render = render;
        _release = release;
    }

    /// <summary>Forgets the last tile: a tensor read to its end holds no memory.</summary>
    private void Finish()
    {
        lock (_render)
        {
            _last = [];
            _lastIndex = -1;
        }
        _release?.Invoke();
    }

    public override TensorStorage Storage => TensorStorage.Memory;

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        var bytes = new byte[length];
        Read(offset, bytes);
        return bytes;
    }

    protected override void Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset + destination.Length > ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        while (destination.Length > 0)
        {
            int tile = (int)Math.Min(offset / _tileBytes, _tiles - 1);
            byte[] bytes = Tile(tile);
            long start = offset - tile * _tileBytes;
            int n = (int)Math.Min(destination.Length, bytes.Length - start);
            if (n <= 0) throw new InvalidOperationException($"tile {tile} has {bytes.Length} bytes, offset {start} was asked for");
            bytes.AsSpan((int)start, n).CopyTo(destination);
            destination = destination[n..];
            offset += n;
        }
        if (offset == ByteLength) Finish();
    }

    /// <summary>The save path: tile after tile straight into the stream.</summary>
    public override void CopyTo(Stream destination)
    {
        long written = 0;
        for (int tile = 0; tile < _tiles; tile++)
        {
            var bytes = Tile(tile);
            if (tile < _tiles - 1 && bytes.Length != _tileBytes) throw new InvalidOperationException($"tile {tile} has {bytes.Length} bytes, not {_tileBytes}");
            destination.Write(bytes);
            written += bytes.Length;
        }
        if (written != ByteLength) throw new InvalidOperationException($"the tiles hold {written} bytes, the tensor {ByteLength}");
        Finish();
    }

    private byte[] Tile(int index)
    {
        lock (_render)
        {
            if (index != _lastIndex)
            {
                _last = _render(index);
                _lastIndex = index;
            }
            return _last;
        }
    }
}

/// <summary>The int4 tensors of one quantized weight, each lazy over the shared <see cref="Int4Weight"/>: MatMulNBits' packed
/// B, scales and packed zero points, or the opset-21 INT4/UINT4 weight with its blocked scales and zero points.</summary>
internal static class Int4Tensors
{
    private static TiledTensor Tiled(Int4Weight w, TensorDataType type, long[] dims, long tileBytes, int tiles, Func<int, byte[]> render) =>
        new(type, dims, tileBytes, tiles, render, w.Release);

    // ---- MatMulNBits: B [N, k_blocks, block_size / 2], scales [N, k_blocks], zero_points [N, ceil(k_blocks / 2)] -----------

    public static Tensor MatMulNBitsWeight(Int4Weight w)
    {
        int blob = w.BlockSize / 2;
        long perChannel = (long)w.KBlocks * blob;
        return Tiled(w, TensorDataType.UInt8, [w.N, w.KBlocks, blob], perChannel * w.ChannelsPerTile, w.ChannelTileCount, index =>
        {
            var tile = w.ChannelTile(index);
            var bytes = new byte[perChannel * tile.Channels];
            var padded = new byte[(long)w.KBlocks * w.BlockSize];
            for (int c = 0; c < tile.Channels; c++)
            {
                tile.Codes.AsSpan(c * w.K, w.K).CopyTo(padded);
                // The tail of a short last block holds the zero point's code: it dequantizes to 0.
                padded.AsSpan(w.K).Fill(tile.ZeroPoints[c * tile.Blocks + w.KBlocks - 1]);
                Int4Packing.PackUnsigned(padded, bytes.AsSpan((int)(c * perChannel), (int)perChannel));
            }
            return bytes;
        });
    }

    public static Tensor ChannelMajorScales(Int4Weight w) =>
        Scales(w, [w.N, w.KBlocks], (long)w.KBlocks * w.ChannelsPerTile, w.ChannelTileCount, index => w.ChannelTile(index, codes: false).Scales);

    public static Tensor MatMulNBitsZeroPoints(Int4Weight w)
    {
        int perChannel = (w.KBlocks + 1) / 2;
        return Tiled(w, TensorDataType.UInt8, [w.N, perChannel], (long)perChannel * w.ChannelsPerTile, w.ChannelTileCount, index =>
        {
            var tile = w.ChannelTile(index, codes: false);
            var bytes = new byte[(long)perChannel * tile.Channels];
            for (int c = 0; c < tile.Channels; c++)
                for (int b = 0; b < tile.Blocks; b++)
                    bytes[c * perChannel + (b >> 1)] |= (byte)(tile.ZeroPoints[c * tile.Blocks + b] << ((b & 1) * 4));
            return bytes;
        });
    }

    // ---- opset 21: the weight in its stored layout, blocked along the input axis ------------------------------------------

    /// <summary>INT4 (symmetric: code - 8) or UINT4 (asymmetric) in the stored layout.</summary>
    public static Tensor BlockedWeight(Int4Weight w)
    {
        var type = w.Symmetric ? TensorDataType.Int4 : TensorDataType.UInt4;
        if (w.InputAxis == 1)
        {
            // [N, K]: a channel tile is a run of whole rows.
            long elements = (long)w.K * w.ChannelsPerTile;
            return Tiled(w, type, [w.N, w.K], elements / 2, w.ChannelTileCount, index =>
                Pack(w.ChannelTile(index).Codes, w.Symmetric));
        }
        // [K, N]: a block-row tile is a run of whole rows; the tile holds it channel-major.
        long rowsPerTile = (long)w.BlocksPerTile * w.BlockSize;
        return Tiled(w, type, [w.K, w.N], rowsPerTile * w.N / 2, w.BlockRowTileCount, index =>
        {
            var tile = w.BlockRowTile(index);
            var codes = new byte[(long)tile.Length * w.N];
            for (int r = 0; r < tile.Length; r++)
                for (int n = 0; n < w.N; n++) codes[(long)r * w.N + n] = tile.Codes[(long)n * tile.Length + r];
            return Pack(codes, w.Symmetric);
        });
    }

    /// <summary>The scales of the opset-21 form: [N, k_blocks] for a [N, K] weight, [k_blocks, N] for a [K, N] one.</summary>
    public static Tensor BlockedScales(Int4Weight w)
    {
        if (w.InputAxis == 1) return ChannelMajorScales(w);
        return Scales(w, [w.KBlocks, w.N], (long)w.BlocksPerTile * w.N, w.BlockRowTileCount, index =>
        {
            var tile = w.BlockRowTile(index, codes: false);
            var scales = new float[(long)tile.Blocks * w.N];
            for (int b = 0; b < tile.Blocks; b++)
                for (int n = 0; n < w.N; n++) scales[(long)b * w.N + n] = tile.Scales[(long)n * tile.Blocks + b];
            return scales;
        });
    }

    /// <summary>UINT4 zero points with the scales' shape (asymmetric only).</summary>
    public static Tensor BlockedZeroPoints(Int4Weight w)
    {
        if (w.InputAxis == 1)
            return Tiled(w, TensorDataType.UInt4, [w.N, w.KBlocks], (long)w.KBlocks * w.ChannelsPerTile / 2, w.ChannelTileCount,
                index => Pack(w.ChannelTile(index, codes: false).ZeroPoints, signed: false));
        return Tiled(w, TensorDataType.UInt4, [w.KBlocks, w.N], (long)w.BlocksPerTile * w.N / 2, w.BlockRowTileCount, index =>
        {
            var tile = w.BlockRowTile(index, codes: false);
            var zeros = new byte[(long)tile.Blocks * w.N];
            for (int b = 0; b < tile.Blocks; b++)
                for (int n = 0; n < w.N; n++) zeros[(long)b * w.N + n] = tile.ZeroPoints[(long)n * tile.Blocks + b];
            return Pack(zeros, signed: false);
        });
    }

    private static Tensor Scales(Int4Weight w, long[] dims, long elementsPerTile, int tiles, Func<int, float[]> values)
    {
        int size = (int)w.ScaleType.ByteLength(1);
        return Tiled(w, w.ScaleType, dims, elementsPerTile * size, tiles, index =>
        {
            var v = values(index);
            var bytes = new byte[(long)v.Length * size];
            WeightReader.Write(v, w.ScaleType, bytes);
            return bytes;
        });
    }

    /// <summary>Two 4-bit values per byte, element 0 low (<see cref="Int4Packing"/>, as ONNX and MatMulNBits store them);
    /// symmetric codes become INT4 (code - 8).</summary>
    private static byte[] Pack(byte[] codes, bool signed)
    {
        var packed = new byte[Int4Packing.PackedLength(codes.Length)];
        if (!signed)
        {
            Int4Packing.PackUnsigned(codes, packed);
            return packed;
        }
        var values = new sbyte[codes.Length];
        for (int i = 0; i < codes.Length; i++) values[i] = (sbyte)(codes[i] - Int4BlockCodec.SymmetricZeroPoint);
        Int4Packing.PackSigned(values, packed);
        return packed;
    }
}
