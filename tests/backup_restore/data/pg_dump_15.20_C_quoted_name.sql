--
-- PostgreSQL database dump
--

\restrict hgOBOl6mFWemigvu0tYCbFwc5whOKsRTGNoI9vGcZ7lebopk8wXWD3LegZX5Hww

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: we'ird db; Type: DATABASE; Schema: -; Owner: postgres
--

CREATE DATABASE "we'ird db" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';


ALTER DATABASE "we'ird db" OWNER TO postgres;

\unrestrict hgOBOl6mFWemigvu0tYCbFwc5whOKsRTGNoI9vGcZ7lebopk8wXWD3LegZX5Hww
\encoding SQL_ASCII
\connect -reuse-previous=on "dbname='we\'ird db'"
\restrict hgOBOl6mFWemigvu0tYCbFwc5whOKsRTGNoI9vGcZ7lebopk8wXWD3LegZX5Hww

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: t; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.t (
    a integer
);


ALTER TABLE public.t OWNER TO postgres;

--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.t (a) FROM stdin;
1
\.


--
-- PostgreSQL database dump complete
--

\unrestrict hgOBOl6mFWemigvu0tYCbFwc5whOKsRTGNoI9vGcZ7lebopk8wXWD3LegZX5Hww

