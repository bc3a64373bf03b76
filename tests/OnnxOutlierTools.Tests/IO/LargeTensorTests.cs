using System.Buffers.Binary;
using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Tensors above 2 GiB (Llama-3-70B's fp16 embedding is 2.1 GB) read in chunks at any offset; whole
/// spans and arrays are refused with a clear message only when the result truly cannot be one.</summary>
public class LargeTensorTests
{
    private const long Gib = 1L << 30;

    [Fact]
    public void ExternalTensorAbove2GiB_ReadsAtAnyOffset_RefusesOneSpan()
    {
        using var temp = new TempFolder("large-tensor");
        // A sparse data file (no disk blocks) with a few fp16 values written past 2 GiB.
        long elements = (long)(2.1 * Gib) / 2;
        long markerElement = (1L << 30) + 12345; // byte offset 2 GiB + 24690
        using (var data = new FileStream(temp.Path("model.onnx.data"), FileMode.CreateNew))
        {
            data.SetLength(elements * 2);
            data.Position = markerElement * 2;
            Span<byte> marker = stackalloc byte[6];
            for (int i = 0; i < 3; i++) BinaryPrimitives.WriteUInt16LittleEndian(marker[(2 * i)..], BitConverter.HalfToUInt16Bits((Half)(i + 1.5f)));
            data.Write(marker);
        }
        var t = new TensorProto { Name = "embed", DataType = (int)TensorDataType.Float16, DataLocation = TensorProto.Types.DataLocation.External };
        t.Dims.Add([elements]);
        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "model.onnx.data" });
        var graph = new GraphProto { Name = "g", Initializer = { t } };
        graph.Node.Add(new NodeProto { OpType = "Shape", Input = { "embed" }, Output = { "s" } });
        graph.Output.Add(new ValueInfoProto { Name = "s" });
        var proto = new ModelProto { IrVersion = 8, Graph = graph, OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 17 } } };
        File.WriteAllBytes(temp.Path("model.onnx"), proto.ToByteArray());

        using var model = ModelReader.Load(temp.Path("model.onnx"));
        var tensor = model.Graph.Initializers[0].ConstValue!;
        Assert.True(tensor.ByteLength > int.MaxValue);
        var bytes = new byte[8];
        tensor.CopyTo(markerElement * 2 - 2, bytes);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(bytes));
        Assert.Equal((Half)1.5f, BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2))));
        var halves = new Half[3];
        tensor.CopyTo(markerElement, halves.AsSpan());
        Assert.Equal([(Half)1.5f, (Half)2.5f, (Half)3.5f], halves);
        // The last bytes, and one past them.
        tensor.CopyTo(tensor.ByteLength - 8, bytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => tensor.CopyTo(tensor.ByteLength - 4, bytes));

        var span = Assert.Throws<NotSupportedException>(() => tensor.Bytes.Length);
        Assert.Contains("chunks", span.Message);
        var array = Assert.Throws<NotSupportedException>(() => tensor.ToArrayTensor());
        Assert.Contains($"{tensor.ByteLength} bytes", array.Message);
        // A chunk enumeration that starts past 2 GiB sees the marker (reads 1 chunk of the mapped file).
        Assert.Equal(1.5f, (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(tensor.GetBytes(markerElement * 2, 2))));
    }

    [Fact]
    public void GeneratedTensorAbove2GiB_EnumeratesInChunks_AndStreams()
    {
        long length = 2 * Gib + 100;
        // Each 1 MiB block holds its block number: cheap to fill, and any misplaced chunk shows.
        var tensor = new GeneratedTensor(TensorDataType.UInt8, [length], (offset, destination) =>
        {
            for (int i = 0; i < destination.Length;)
            {
                long at = offset + i;
                int n = (int)Math.Min(destination.Length - i, (1 << 20) - (at & ((1 << 20) - 1)));
                destination.Slice(i, n).Fill((byte)(at >> 20));
                i += n;
            }
        });
        long total = 0, expectedOffset = 0;
        int chunks = 0;
        var enumerator = tensor.Chunks(48 << 20).GetEnumerator();
        while (enumerator.MoveNext())
        {
            var chunk = enumerator.Current;
            Assert.Equal(expectedOffset, enumerator.Offset);
            Assert.Equal((byte)(enumerator.Offset >> 20), chunk[0]);
            Assert.Equal((byte)((enumerator.Offset + chunk.Length - 1) >> 20), chunk[^1]);
            expectedOffset += chunk.Length;
            total += chunk.Length;
            chunks++;
        }
        Assert.Equal(length, total);
        Assert.Equal((int)((length + (48 << 20) - 1) / (48 << 20)), chunks);
        var tail = new byte[100];
        tensor.CopyTo(2 * Gib, tail);
        Assert.All(tail, b => Assert.Equal((byte)(2048 & 0xff), b));
        var counter = new CountingStream();
        tensor.CopyTo(counter);
        Assert.Equal(length, counter.Length);
        // 2 GiB + 100 one-byte elements cannot be one int64 array: a clear refusal before any allocation.
        var refused = Assert.Throws<NotSupportedException>(() => tensor.ToInt64Array());
        Assert.Contains("more than one .NET int64 array can hold", refused.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1000)]
    public void Conversions_InChunks_MatchElementByElement(int chunk)
    {
        var floats = Enumerable.Range(0, 37).Select(i => i * 0.25f - 3).ToArray();
        var f16 = ArrayTensor.Create<Half>(floats.Select(f => (Half)f).ToArray(), 37);
        var bf16 = ArrayTensor.Create<BFloat16>(floats.Select(f => (BFloat16)f).ToArray(), 37);
        var f64 = ArrayTensor.Create<double>(floats.Select(f => (double)f).ToArray(), 37);
        var f32 = ArrayTensor.Create<float>(floats, 37);
        foreach (var t in new Tensor[] { f16, bf16, f64, f32 }) Assert.Equal(floats, t.ToSingleArray(chunk));
        var ints = Enumerable.Range(0, 37).Select(i => (long)(i * 5 - 90)).ToArray();
        Assert.Equal(ints, ArrayTensor.Create<long>(ints, 37).ToInt64Array(chunk));
        Assert.Equal(ints, ArrayTensor.Create<int>(ints.Select(i => (int)i).ToArray(), 37).ToInt64Array(chunk));
        Assert.Equal(ints, ArrayTensor.Create<short>(ints.Select(i => (short)i).ToArray(), 37).ToInt64Array(chunk));
        Assert.Equal(ints, ArrayTensor.Create<sbyte>(ints.Select(i => (sbyte)i).ToArray(), 37).ToInt64Array(chunk));
        Assert.Equal(ints.Select(i => (long)(byte)i), ArrayTensor.Create<byte>(ints.Select(i => (byte)i).ToArray(), 37).ToInt64Array(chunk));
        Assert.Equal(ints.Select(i => (long)(uint)i), ArrayTensor.Create<uint>(ints.Select(i => (uint)i).ToArray(), 37).ToInt64Array(chunk));
        Assert.Throws<NotSupportedException>(() => f16.ToInt64Array(chunk));
        Assert.Throws<NotSupportedException>(() => ArrayTensor.Create<int>([1]).ToSingleArray(chunk));
    }

    [Fact]
    public void DataEquals_ComparesTypeShapeAndBytes()
    {
        var a = ArrayTensor.Create<float>([1f, 2f], 2);
        Assert.True(a.DataEquals(ArrayTensor.Create<float>([1f, 2f], 2)));
        Assert.False(a.DataEquals(ArrayTensor.Create<float>([1f, 3f], 2)));
        Assert.False(a.DataEquals(ArrayTensor.Create<float>([1f, 2f], 1, 2)));
        Assert.False(a.DataEquals(ArrayTensor.Create<int>([1, 2], 2)));
        var generated = new GeneratedTensor(TensorDataType.Float, [2], (o, d) => a.Bytes.Slice((int)o, d.Length).CopyTo(d));
        Assert.True(a.DataEquals(generated));
        Assert.True(generated.ToArrayTensor().DataEquals(a));
    }

    private sealed class CountingStream : Stream
    {
        public override long Length => _length;
        private long _length;
        public override void Write(ReadOnlySpan<byte> buffer) => _length += buffer.Length;
        public override void Write(byte[] buffer, int offset, int count) => _length += count;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
