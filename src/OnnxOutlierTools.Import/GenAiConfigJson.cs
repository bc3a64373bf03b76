using System.Text;
using System.Text.Json;

namespace OnnxOutlierTools.Import;

/// <summary>The genai_config.json onnxruntime-genai reads next to a decoder, in the form its model builder
/// writes for a Llama with GroupQueryAttention (our <see cref="LlamaOnnxFlavour.GenAiGqa"/> flavour's names:
/// input_ids, attention_mask, past_key_values.%d.key/value in; logits, present.%d.key/value out; positions
/// come from the mask in the graph). GroupQueryAttention takes the past and present in one buffer, so
/// <c>past_present_share_buffer</c> is on, as the builder sets it for GQA models.</summary>
public static class GenAiConfigJson
{
    public static string Create(DecoderConfig c, string modelFile = "model.onnx")
    {
        ArgumentNullException.ThrowIfNull(c);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, Inspection.JsonOutput.WriterOptions))
        {
            w.WriteStartObject();
            w.WriteStartObject("model");
            w.WriteNumber("bos_token_id", Llama2cTokenizer.Bos);
            w.WriteNumber("context_length", c.MaxSeqLen);
            w.WriteStartObject("decoder");
            w.WriteStartObject("session_options");
            w.WriteString("log_id", "onnxruntime-genai");
            w.WriteStartArray("provider_options");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteString("filename", modelFile);
            w.WriteNumber("head_size", c.HeadSize);
            w.WriteNumber("hidden_size", c.Dim);
            w.WriteStartObject("inputs");
            w.WriteString("input_ids", "input_ids");
            w.WriteString("attention_mask", "attention_mask");
            w.WriteString("past_key_names", "past_key_values.%d.key");
            w.WriteString("past_value_names", "past_key_values.%d.value");
            w.WriteEndObject();
            w.WriteStartObject("outputs");
            w.WriteString("logits", "logits");
            w.WriteString("present_key_names", "present.%d.key");
            w.WriteString("present_value_names", "present.%d.value");
            w.WriteEndObject();
            w.WriteNumber("num_attention_heads", c.Heads);
            w.WriteNumber("num_hidden_layers", c.Layers);
            w.WriteNumber("num_key_value_heads", c.KvHeads);
            w.WriteEndObject();
            w.WriteNumber("eos_token_id", Llama2cTokenizer.Eos);
            w.WriteNumber("pad_token_id", 0);
            w.WriteString("type", "llama");
            w.WriteNumber("vocab_size", c.VocabSize);
            w.WriteEndObject();
            w.WriteStartObject("search");
            w.WriteBoolean("do_sample", false);
            w.WriteBoolean("early_stopping", true);
            w.WriteNumber("max_length", c.MaxSeqLen);
            w.WriteNumber("min_length", 0);
            w.WriteNumber("num_beams", 1);
            w.WriteNumber("num_return_sequences", 1);
            w.WriteBoolean("past_present_share_buffer", true);
            w.WriteNumber("repetition_penalty", 1.0);
            w.WriteNumber("temperature", 1.0);
            w.WriteNumber("top_k", 1);
            w.WriteNumber("top_p", 1.0);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }
}
